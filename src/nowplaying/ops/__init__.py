"""Operations: owner alerts, Prometheus metrics, log setup."""
