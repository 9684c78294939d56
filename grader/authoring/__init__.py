"""Authoring: from one instructor notebook with the solution in it to everything grading needs
(`grader assign`): the student notebook, the reference module, the config and the fixtures."""
