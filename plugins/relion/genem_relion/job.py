"""RELION's External-job contract, implemented once for every GenEM program, in modules by concern:

* :mod:`.contract`: the file names, exit codes and errors RELION and the programs share;
* :mod:`.arguments`: a program's declaration (:class:`ProgramSpec`, :class:`Param`) and RELION's command line;
* :mod:`.nodes`: output nodes in the format of the project's RELION (3.1, 4.0 or 5.0);
* :mod:`.lifecycle`: :class:`RelionJob`, what a program's body sees, and its ``run()``: start, success, failure
  and abort, each ending in exactly one exit file; progress lines for ``run.out`` through engine callbacks;
* :mod:`.supervisor`: :func:`run_program`, each program's ``main``, which supervises a worker process.

The programs (``simulate``, ``translate``, ``denoise``, ``pick``) only declare a :class:`ProgramSpec` and a body. This
module gathers the names programs, tests and docs use.
"""
from genem.io.errors import GenemInputError  # noqa: F401

from .arguments import (GPU_PARAM, INPUT_ARGUMENTS, Param, ProgramSpec, parse_arguments,  # noqa: F401
                        peek_output_dir, resolve_device)
from .contract import (ABORT_NOW, EXIT_ABORTED, EXIT_FAILURE, EXIT_FILES, EXIT_SUCCESS, NODES_FILE,  # noqa: F401
                       RC_ABORTED, RC_FAILURE, RC_SUCCESS, JobAborted, JobFailed, JobTerminated, write_exit_file)
from .lifecycle import RelionJob  # noqa: F401
from .nodes import (NODE_KINDS, RELION_VERSIONS, detect_relion_version, format_output_nodes,  # noqa: F401
                    node_type, read_output_nodes)
from .supervisor import WORKER_ENV, run_program  # noqa: F401
