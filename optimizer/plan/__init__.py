"""The plan: the document written from a solution, the independent check, the summary,
and the diff between two plans."""
