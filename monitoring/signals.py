def record_login(sender, request, user, **kwargs):
    from .services import activity_record

    activity_record(title=f"{user.get_username()} logged in", action_type="login", user=user)
