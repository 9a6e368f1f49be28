"""The credit gym: a fast task whose gold reward, and the gold credit of every token, is known exactly.

A small GPT-2 policy writes 24-64 made-up words after a short prompt; the gold reward is a known
function of specific words at specific places (`task`); a reward model learned from gold-labelled
texts (`models`) stands between the two, so attribution error is real while the truth stays
checkable. Registered names: `credit-gym-policy`, `credit-gym-rm` and `credit-gym-policy-dpo` (the
policy DPO-tuned on its own sample pairs ranked by the RM, for `log_ratio`; see `builtin.registry`)
(models), `credit-gym-prompts` (dataset) and `credit-gym` (gold scorer); `tune_jobs/configs/gym.yaml`
runs a sweep on it.
"""

POLICY_NAME = "credit-gym-policy"
REWARD_MODEL_NAME = "credit-gym-rm"
PROMPTS_NAME = "credit-gym-prompts"
GOLD_NAME = "credit-gym"
