"""tau-bench-retail-style customer service: database (database.py), tools and policy (tools.py),
tasks (tasks.py), scripted user (user.py), environment (env.py), tau-bench's own data and tasks
(taubench.py)."""

from teachable.envs.retail.env import RetailEnv, RetailWorld, configure_retail
from teachable.envs.retail.tasks import LEVELS as RETAIL_LEVELS
from teachable.envs.retail.tools import POLICY, TOOLS

__all__ = ["POLICY", "RETAIL_LEVELS", "TOOLS", "RetailEnv", "RetailWorld", "configure_retail"]
