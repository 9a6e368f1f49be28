"""Everything a config can name as `builtin:<name>`: offline models, prompt datasets, gold scorers.

`registry` is the one mapping of names (and `resolve_model`, `load_dataset_rows`, `gold_scorer`);
`cache` is where built models live; `tiny` holds the tiny test models and prompts; `demo` the
demo kit (policy, reward model, VADER gold scorer, prompts); `gym` the credit gym (word-level policy,
reward model fitted to a known gold, exact gold credit, prompts). The rest of the library reaches the
built-ins only through `registry`, and nothing here imports the rest of the library beyond
`dense_reward.errors`.
"""
