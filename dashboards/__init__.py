"""Grafana dashboards and provisioning for firewarden (see dashboards/README.md)."""
