"""``certun bench``: every unlearner, every metric, one command.

Runs a set of unlearning methods on a task and a forget set, measures each with the metrics
of :mod:`certun.audits` against an oracle ensemble retrained without the forget set, and
ranks them (:func:`run`; the command line is ``certun bench``).

* :mod:`~certun.bench.tasks` -- the tasks (bundled datasets, local files);
* :mod:`~certun.bench.forget` -- forget-set selectors (random, a whole class, nearest a target);
* :mod:`~certun.bench.methods` -- the method registry and the plug-in protocol;
* :mod:`~certun.bench.cache` -- the on-disk cache of oracle ensembles and audits;
* :mod:`~certun.bench.runner` -- ensembles, metrics, ranks;
* :mod:`~certun.bench.report` -- markdown, JSON, plots and an HTML page.

Example::

    from certun import bench
    report = bench.run(bench.BenchConfig(task="digits_3v8", methods=("retrain", "guo")))
    print(bench.markdown(report))
"""

from certun.bench.cache import Cache as Cache
from certun.bench.forget import ForgetSpec as ForgetSpec
from certun.bench.forget import select_forget as select_forget
from certun.bench.methods import Method as Method
from certun.bench.methods import Model as Model
from certun.bench.methods import available as available
from certun.bench.methods import from_functions as from_functions
from certun.bench.methods import register as register
from certun.bench.report import markdown as markdown
from certun.bench.report import write_results as write_results
from certun.bench.runner import METRICS as METRICS
from certun.bench.runner import BenchConfig as BenchConfig
from certun.bench.runner import run as run
from certun.bench.tasks import Task as Task
from certun.bench.tasks import load_task as load_task

__all__ = ["BenchConfig", "Cache", "ForgetSpec", "METRICS", "Method", "Model", "Task",
           "available", "from_functions", "load_task", "markdown", "register", "run",
           "select_forget", "write_results"]
