"""Alerting: evaluate the rules of ALERT_RULES_FILE every minute (beat, on CELERY_ALERTS_QUEUE), keep their states
in `alerts-apm`, and notify each change to firing or resolved (webhooks, the live stream's `alert` event).

    beat --alerts_due--> evaluate (query/alerts.py: the routes' numbers) -> state.step per rule
         -> states, changes, deliveries stored in one bulk -> alert_deliver per change and target
         (its own task: retried with backoff and a bound; never holds the evaluation up)
"""
