"""Knowledge: does the model know the team's facts, and has it kept its general ability?

Owns the answer scores (`scoring`: normalise, fact_match, token_f1, rouge_l) and the
general-ability set that ships with the studio (`general`: load_general_set).
"""
