"""The training tasks a sweep may name."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.deps import authorize
from api.schemas import TaskOut
from sweep.training.tasks import get_task, task_names, task_options_help

router = APIRouter(prefix="/v1/tasks", tags=["tasks"], dependencies=[Depends(authorize)])


@router.get("", response_model=list[TaskOut])
def list_tasks() -> list[TaskOut]:
    """Built-in tasks and those installed through the ``sweep.tasks`` entry points."""
    found = []
    for name in task_names():
        try:
            task = get_task(name)
        except Exception as exc:  # a broken plug-in must not hide the others
            found.append(TaskOut(name=name, description=f"cannot be loaded: {exc}", options={}))
            continue
        found.append(
            TaskOut(name=name, description=task.description, options=task_options_help(task))
        )
    return found
