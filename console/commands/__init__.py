"""Every write the console makes. Each function takes the signed-in Actor and passes it to core,
which checks the role against the users table (PermissionDenied) and audits the change; hiding
a control in the UI is only a convenience, these calls are the enforcement path. One module
per page (``budgets``, ``routing``, ``pricing``, ``playground``, ``admin``) plus ``usage``
(CSV import, demo data) and ``forecast`` (anomaly alerts, a system write).
"""
