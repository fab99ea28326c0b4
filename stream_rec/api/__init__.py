"""The HTTP API and the live page (`stream-rec serve`).

It reads lists from an in-process cache fed by the recommendations topic (Redis is the
fallback), sends events and profiles to their topics through an idempotent producer
after validating them with the worker's own decoders, and pushes new lists and the
worker's metric snapshots to the page over server-sent events. Nothing connects at
import time: clients are created when the application starts (its lifespan).
"""
