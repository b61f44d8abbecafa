"""The report builder: run records and bench documents -> HTML, Markdown, CSV and figures.

It reads files only. It imports neither the engine nor the clusters (``.importlinter`` says so).
"""
