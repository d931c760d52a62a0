"""The typed pipeline model (Stage, Dep, Out, Param) and the stage graph: validation on
construction (duplicate and overlapping outputs, cycles, missing deps) and pure planning
(what is upstream of a target, in which order), and the plan: the stages of a build in
order, each with the reasons it is stale (the engine's staleness check fills it in).

May import: errors, contracts (the contract model each stage carries). Nothing reads files here.
"""
