"""Feedback: ratings and labels of logged turns, their quality checks, and the classifier of what
users dislike.

Modules and their public names:
- classifier: FeedbackModel
- quality: QualityCheck, Agreement, QualityReport, QualityService
- ratings: Feedback, BulkAction, FeedbackPage, FeedbackService
- turn_filter: TurnFilter
"""
