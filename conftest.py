"""The repository root's conftest: loads the lab's autograder plugin.

The plugin adds ``--impl lab|solutions|PATH`` (the implementation under
test), ``--gradescope FILE`` (write Gradescope's results.json), the exercise
markers ``ex1`` ... ``ex6`` with their points, and the table of points at the
end of a run. See tests/grading/plugin.py.
"""

pytest_plugins = ["tests.grading.plugin", "tests.grading.fixtures"]
