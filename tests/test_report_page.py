"""The report page in headless Chromium: it loads with no script or console errors and every image
decodes. Skipped when no Chromium is installed (`make test` installs Debian's `chromium` when
missing)."""

import pytest

from teachable.core.params import Params
from teachable.report.browser import check_page, find_chromium
from teachable.report.build import KEY_FIGURES, build_report
from tests.report_synthetic import write_repo

pytestmark = [
    pytest.mark.heavy,  # `make test-fast` leaves it out
    pytest.mark.skipif(find_chromium() is None, reason="no chromium (apt-get install chromium)"),
]


def test_report_page_loads_without_errors_and_every_image_decodes(tmp_path):
    write_repo(tmp_path, n_per_quadrant=4)
    report = build_report(Params.defaults(), tmp_path)
    detail = check_page(report.detail)
    assert detail["errors"] == [] and detail["console"] == []
    assert detail["images"] == detail["decoded"] == 8 and detail["ok"]
    first = check_page(report.page)
    assert first["ok"] and first["images"] == first["decoded"] == len(KEY_FIGURES)
    # a first page a reviewer reads in five minutes: the old single page was 16,000 px tall at this
    # width
    assert first["height"] < 6000, first["height"]


def test_the_check_catches_a_broken_image_and_a_script_error(tmp_path):
    write_repo(tmp_path, phases=(1,), n_per_quadrant=4)
    page = build_report(Params.defaults(), tmp_path).page
    text = page.read_text()
    page.write_text(
        text.replace(
            "</body>",
            '<img alt="broken" src="data:image/png;base64,AAAA">'
            "<script>notDefined();</script></body>",
        )
    )
    result = check_page(page)
    assert not result["ok"] and result["bad"] == ["broken"]
    assert any("notDefined" in e for e in result["errors"])
