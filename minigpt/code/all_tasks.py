"""Imports every code task so that `get_task` and `task_names` know them (`task=code_*`, docs/code.md)."""

from minigpt.code.docstring_tasks import CodeFromDocstring, CodeToDocstring
from minigpt.code.program_tasks import CodeErrorLine, CodeOutput
from minigpt.code.repair_tasks import CodeRepair, CodeUnitTests
from minigpt.code.tasks import CodeFunctions

CODE_TASKS = {
    task.name: task
    for task in (
        CodeFunctions,
        CodeFromDocstring,
        CodeToDocstring,
        CodeRepair,
        CodeUnitTests,
        CodeOutput,
        CodeErrorLine,
    )
}
