"""Tasks: the Environment base (env.py), one Environment subclass per module with its teacher and pre-training data, the curriculum, and the KPIs (kpi_registry.py, kpis.py)."""
