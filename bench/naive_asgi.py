"""The usual approach, for comparison only: one AsyncJsonWebsocketConsumer per connection, each
joined to the job's Channels group. Served beside Intake's own routes by the benchmark."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path

from config.asgi import application as intake
from realtime.events import group_name
from realtime.routing import websocket_patterns


class NaiveJobConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.group = group_name(f"job:{self.scope['url_route']['kwargs']['job_id']}")
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def realtime_event(self, message):
        await self.send(text_data=message["json"])


application = ProtocolTypeRouter(
    {
        "http": intake.application_mapping["http"],
        "websocket": URLRouter(
            [path("ws/naive/<str:job_id>/", NaiveJobConsumer.as_asgi()), *websocket_patterns]
        ),
    }
)
