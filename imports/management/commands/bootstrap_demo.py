"""Create a demo organization and an admin user when the database has no users."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from imports.models import Membership, Organization, Role


class Command(BaseCommand):
    help = "First run only: a demo organization and an admin user (the login is printed once)."

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        if User.objects.exists():
            return
        password = secrets.token_urlsafe(12)
        with transaction.atomic():
            org = Organization.objects.create(name="Demo Organization", slug="demo")
            user = User.objects.create_superuser("admin", "admin@example.com", password)
            Membership.objects.create(user=user, organization=org, role=Role.ADMIN)
        self.stdout.write(
            self.style.SUCCESS(
                "Created organization 'demo' and user 'admin' with password "
                f"'{password}' (shown only this once; change it in the admin)."
            )
        )
