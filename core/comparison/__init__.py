"""Comparison: two models on the same prompts (side by side, blind votes, A/B experiments),
automatic evaluation, and the statistics that decide.

Modules and their public names:
- arena: CompareRequest, CompareUpdate, PairSummary, Gate, ArenaService
- evaluation: EvalItem, EvalRequest, EvaluationService
- evaluation_cli: main
- experiments: ExperimentSpec, Assignment, ArmResult, ExperimentService
- stats: Interval, TestResult, Rating
"""
