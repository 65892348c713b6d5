"""Knowledge: does the model know the team's facts, and has it kept its general ability?

Owns the answer scores (`scoring`: normalise, fact_match, token_f1, rouge_l), the
general-ability set that ships with the studio (`general`: load_general_set), knowledge
checks built from the documents and reviewed by the team (`check`, `questions`, `files`),
their runs on base and adapters (`runs`, `batch`), and the rule that check questions
never train (`holdout`).
"""
