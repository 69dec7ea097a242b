"""The job machinery: queue (enqueue, claim, lease), retry (the one RetryPolicy and the
schedules), jobs (outcomes, the typed WorkerContext, the Registry), worker (the loop),
periodic (once per interval across workers), retention (finished payloads destroyed),
wakeup (LISTEN/NOTIFY, so an idle worker starts on the commit that queued its work)."""
