"""ML steps of the pipeline as plain functions (no Django): intake, compression, evaluation.

evalset    load_evalset(path) -> EvalSet                       (.npz, never unpickled)
validate   validate_model(model, evalset) -> ModelSignature    (ModelInvalid)
convert    convert_to_onnx(source, out_dir, evalset, ...) -> Conversion (.onnx/.pt2/.safetensors)
compress   build_candidates(original, evalset, task, policy, out_dir) -> list[Candidate]
evaluate   evaluate(model, evalset, task, reference_outputs=...) -> Evaluation (metrics, outputs)
select     choose(original_metrics, [(candidate, metrics)], policy, task=...) -> Choice
runtime    make_session(path, device), detect_device()
"""
