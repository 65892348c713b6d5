"""Operations: running the studio and the loop: the dashboard, the loop's next step, automated
retraining, backup and restore, one app per data dir, users and passwords.

Modules and their public names:
- auth: Authenticator
- backup: Manifest
- dashboard: DashboardService
- instance_lock: InstanceLock
- loop_state: NextStep
- retraining: RetrainingPolicy, RetrainingAction, RetrainingService
- users: read_password, hash_password, write_users_file, add_user, remove_user, main
"""
