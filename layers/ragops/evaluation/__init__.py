"""Offline evaluation: retrieval metrics per search mode on BEIR-layout datasets, answer
checks, a Markdown report and a regression gate against a baseline (`ragops eval`)."""
