"""Monitoring a served model: the data it is sent compared with the data it was trained on
(per-feature drift with Evidently's default method choice and thresholds, PSI, prediction
drift, the contract on served rows), reported in the terminal, as JSON and as an HTML page.

May import: serve, registry, api and everything below them. scipy is imported only here, lazily.
"""
