"""Audit: why a model answers as it does (SHAP, LIME), whom it serves worse (bias reports,
counterfactual probes), how its ratings and prompts drift, and report files.

Modules and their public names:
- drift: DriftAlert, DriftReport, DriftOptions, DriftMonitor
- explain: ExplainSettings, Explanation, AnswerScorer, ExplainService
- fairness: FairnessSettings, GroupReport, FairnessComparison, FairnessService
- probes: ProbeSpec, ProbeReport
- reports: Section
"""
