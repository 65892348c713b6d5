"""Datasets: immutable versioned training sets built from feedback, documents or files; their
kinds, rows, file formats, augmentation and model-written rows (background jobs).

Modules and their public names:
- augment: Augmentation
- formats: record_to_row, read_records, records_to_rows, write_export
- jobs: Cancelled, DatasetJob, DatasetJobs, CachedWriter
- kinds: RatedTurn
- rows: check_kind, content_id, normalise_row, group_key, split_rows, row_text, ...
- synthesis: Writer
- versions: Dataset, DatasetSummary, BuildSpec, DatasetService
"""
