"""The instructors' gradebook: one row per enrolled student, the counted submission per policy."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

import worker.tasks
from grader.extensions import db
from tests.conftest import World, upload
from worker.engine.result import DeliverableResult, GradeResult


def graded(client: FlaskClient, world: World, person: Any, score: float, monkeypatch: pytest.MonkeyPatch) -> int:
    """Upload as `person` and grade it with a scripted engine giving `score` on the first deliverable."""
    deliverables = [DeliverableResult(d.slug, d.title, score if i == 0 else 0.0, d.points, [])
                    for i, d in enumerate(world.assignment.deliverables)]
    result = GradeResult("autograd", "graded", score, 100.0, "", 0.1, deliverables, "fake")
    monkeypatch.setattr(worker.tasks, "run_engine", lambda *args: result)
    response = upload(client, "autograd", b"x = 1\n", headers=person.headers)
    worker.tasks.grade_submission.apply(args=[response.json["id"]])
    return int(response.json["id"])


def test_gradebook_lists_every_student_with_deliverable_scores(app: Flask, client: FlaskClient, world: World,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Does the gradebook list each enrolled student (email, external id) with per-deliverable scores, and
    students without a graded submission as null?"""
    first = graded(client, world, world.student, 15.0, monkeypatch)
    body = client.get("/api/v1/assignments/autograd/scores", headers=world.instructor.headers).json
    assert body["assignment"] == "autograd" and body["course"] == "DEMO101" and body["policy"] == "latest"
    assert [d["id"] for d in body["deliverables"]] == [d.slug for d in world.assignment.deliverables]
    rows = {row["email"]: row for row in body["students"]}
    assert set(rows) == {world.student.email, world.student2.email}  # instructors are not rows
    mine = rows[world.student.email]
    assert mine["external_id"] == "lms-student-1" and mine["submission_id"] == first
    assert mine["score"] == 15.0 and mine["deliverables"]["simple_gradients"] == 15.0
    assert mine["deliverables"]["gradient_checking"] == 0.0
    nobody = rows[world.student2.email]
    assert nobody["score"] is None and nobody["submissions"] == 0
    assert set(nobody["deliverables"].values()) == {None}


def test_latest_and_best_policies(app: Flask, client: FlaskClient, world: World,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Does `latest` count the newest graded submission and `best` the highest-scoring one?"""
    best = graded(client, world, world.student, 18.0, monkeypatch)
    latest = graded(client, world, world.student, 4.0, monkeypatch)
    upload(client, "autograd", b"x = 2\n", headers=world.student.headers)  # queued: never counted
    url = "/api/v1/assignments/autograd/scores"
    rows = client.get(url, headers=world.instructor.headers).json["students"]
    row = next(r for r in rows if r["email"] == world.student.email)
    assert (row["submission_id"], row["score"], row["submissions"]) == (latest, 4.0, 3)
    rows = client.get(url + "?policy=best", headers=world.instructor.headers).json["students"]
    row = next(r for r in rows if r["email"] == world.student.email)
    assert (row["submission_id"], row["score"]) == (best, 18.0)
    world.assignment.score_policy = "best"
    db.session.commit()
    assert client.get(url, headers=world.instructor.headers).json["policy"] == "best"
