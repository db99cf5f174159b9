"""The staff panel at ``/admin…``: one router per area, the same services and role checks as
the API's admin routes (``accounts.deps.check_staff`` / ``check_admin``)."""
