"""Single-task vs multi-task models on the same data (chapter 4.1), on ``multitask``'s public API."""

import keras
import numpy as np
import pandas as pd

from ptft_keras.multitask import (CLASSIFICATION, build_multitask_model, check_tasks,
                                  compile_multitask, evaluate_tasks, subset)


def compare_single_vs_multi(make_backbone, tasks, train, test, epochs=2, batch_size=32,
                            learning_rate=1e-3, loss_weights=None, pooling="mean", seed=0,
                            verbose=0, run_eagerly=False):
    """Train one single-task model per task and one multi-task model; compare on ``test``.

    make_backbone: a function returning a FRESH backbone (every model starts from the same kind
    of weights, e.g. reloaded pre-trained ones). train, test: (x, y, sample_weight) from
    ``task_arrays``; a single-task model trains on the rows labelled for its task only.
    Returns a DataFrame: task, metric (accuracy or mae), single_task, multi_task, difference
    (multi - single) and multi_task_better. ``run_eagerly=True`` skips tracing (quicker for a
    few steps of a tiny model).
    """
    tasks = check_tasks(tasks)
    single = {}
    for task, spec in tasks.items():
        keras.utils.set_random_seed(seed)
        rows = np.flatnonzero(np.asarray(train[2][task]) > 0)
        x, y, w = subset(train, rows)
        model = build_multitask_model(make_backbone(), {task: spec}, pooling=pooling,
                                      name=f"single_{task}")
        compile_multitask(model, {task: spec}, learning_rate=learning_rate,
                          run_eagerly=run_eagerly)
        model.fit(x, {task: y[task]}, sample_weight={task: w[task]}, epochs=epochs,
                  batch_size=batch_size, verbose=verbose)
        single[task] = evaluate_tasks(model, test[0], test[1], test[2], {task: spec})[task]
    keras.utils.set_random_seed(seed)
    model = build_multitask_model(make_backbone(), tasks, pooling=pooling)
    compile_multitask(model, tasks, loss_weights, learning_rate, run_eagerly=run_eagerly)
    model.fit(train[0], train[1], sample_weight=train[2], epochs=epochs, batch_size=batch_size,
              verbose=verbose)
    multi = evaluate_tasks(model, test[0], test[1], test[2], tasks)
    rows = []
    for task, spec in tasks.items():
        metric = "accuracy" if spec["type"] == CLASSIFICATION else "mae"
        difference = multi[task] - single[task]
        rows.append({
            "task": task, "metric": metric, "single_task": single[task],
            "multi_task": multi[task], "difference": difference,
            "multi_task_better": bool(difference > 0 if metric == "accuracy" else difference < 0),
        })
    return pd.DataFrame(rows)
