"""What a SCORM package holds, read safely: the zip's safety checks and extraction (``zip_safety``), the manifest's
SCO list (``parse``) and what each item tells the runtime at launch (``items``). Pure but for the blob store."""
