"""The offline student this package builds when no base model is given (`build`), and its pin
(`pin`). Loading a student, any HF causal LM or this one, is `teachable.policy.student`'s."""
