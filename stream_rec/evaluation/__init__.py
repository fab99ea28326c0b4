"""Datasets, synthetic worlds with planted structure, and (later) prequential evaluation."""
