"""LogicalGraph.depends_on_input on deep graphs: a 12-layer MPNet-base export (all-mpnet-base-v2's depth) made the
recursive walk exceed Python's recursion limit while the plan looked for the embedding Gather (RecursionError from
NativeEngine.from_onnx, benchmarks/bench_encoders.py); the walk is iterative now."""
import onnx
from onnx import TensorProto, helper

from hf_fast.runtime.graph import LogicalGraph


def _chain(n: int) -> onnx.ModelProto:
    """input_ids -> Cast -> n Neg nodes -> out, plus a Shape branch whose values do not depend on the input."""
    nodes = [helper.make_node("Cast", ["input_ids"], ["t0"], to=TensorProto.FLOAT)]
    nodes += [helper.make_node("Neg", [f"t{i}"], [f"t{i + 1}"]) for i in range(n)]
    nodes.append(helper.make_node("Shape", [f"t{n}"], ["shape"]))
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, 4])],
                          [helper.make_tensor_value_info(f"t{n}", TensorProto.FLOAT, [1, 4]),
                           helper.make_tensor_value_info("shape", TensorProto.INT64, [2])])
    return helper.make_model(g)


def test_depends_on_input_walks_a_graph_deeper_than_the_recursion_limit():
    g = LogicalGraph(_chain(5000))
    assert g.depends_on_input("t5000", "input_ids")
    assert not g.depends_on_input("shape", "input_ids")  # a Shape's values do not depend on the input
    assert not g.depends_on_input("t5000", "attention_mask")
