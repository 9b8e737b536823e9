using Microsoft.ML.Anomaly.Vision.Onnx;

namespace Microsoft.ML.Anomaly.Vision.Export;

/// <summary>
/// Decides whether a backbone's nodes, written for one ONNX opset, compute the same when the exported model
/// declares another: every operator must be known here and must not have changed its meaning between the two
/// opsets (changes that only admit more element types do not count). Anything else is refused, since the
/// graph could then score differently.
/// </summary>
internal static class OnnxOpsetCompatibility
{
    // The opsets at which each operator's inputs, attributes or computation changed (type-only changes left out),
    // from the ONNX operator changelog. An operator not listed is refused.
    private static readonly Dictionary<string, int[]> Changes = new(StringComparer.Ordinal)
    {
        ["Abs"] = [1, 6],
        ["Add"] = [1, 6, 7],
        ["AveragePool"] = [1, 7, 10, 11, 19],
        ["BatchNormalization"] = [1, 6, 7, 9],
        ["Cast"] = [1, 6, 9],
        ["Clip"] = [1, 6, 11],
        ["Concat"] = [1, 4, 11],
        ["Constant"] = [1, 9, 11],
        ["Conv"] = [1],
        ["Div"] = [1, 6, 7],
        ["Exp"] = [1, 6],
        ["Flatten"] = [1, 9, 11],
        ["Gemm"] = [1, 6, 7, 9, 11],
        ["GlobalAveragePool"] = [1],
        ["GlobalMaxPool"] = [1],
        ["Identity"] = [1],
        ["LeakyRelu"] = [1, 6],
        ["MatMul"] = [1],
        ["Max"] = [1, 6, 8],
        ["MaxPool"] = [1, 8, 10, 11],
        ["Min"] = [1, 6, 8],
        ["Mul"] = [1, 6, 7],
        ["Neg"] = [1, 6],
        ["Relu"] = [1, 6],
        ["Reshape"] = [1, 5],
        ["Sigmoid"] = [1, 6],
        ["Sqrt"] = [1, 6],
        ["Sub"] = [1, 6, 7],
        ["Tanh"] = [1, 6],
        ["Transpose"] = [1],
    };

    /// <summary>Throws unless every node of <paramref name="graph"/> means the same at opset <paramref name="to"/> as at <paramref name="from"/>.</summary>
    /// <param name="graph">The backbone's graph.</param>
    /// <param name="from">The opset the backbone declares.</param>
    /// <param name="to">The opset of the exported model.</param>
    /// <param name="remedy">What the user can do instead, appended to the message.</param>
    /// <exception cref="NotSupportedException">An operator is unknown here or changed between the two opsets.</exception>
    public static void Check(GraphProto graph, int from, int to, string remedy)
    {
        foreach (NodeProto node in graph.Node)
        {
            if (!string.IsNullOrEmpty(node.Domain) && node.Domain != "ai.onnx")
                throw new NotSupportedException($"The backbone uses operator {node.OpType} of domain '{node.Domain}'; the export writes standard ONNX operators only.");
            if (node.Attribute.Any(a => a.G is not null || a.Graphs.Count > 0))
                throw new NotSupportedException($"The backbone uses operator {node.OpType} with a subgraph; the export merges flat graphs only.");
        }
        if (from == to)
            return;
        foreach (string op in graph.Node.Select(n => n.OpType).Distinct(StringComparer.Ordinal))
        {
            if (!Changes.TryGetValue(op, out int[]? changes))
                throw new NotSupportedException(
                    $"The backbone is written for ONNX opset {from} and uses operator {op}, which this export does not know to mean the same at opset {to}; it will not write a graph that may score differently. {remedy}");
            if (Version(changes, from) != Version(changes, to))
                throw new NotSupportedException(
                    $"The backbone is written for ONNX opset {from} and uses operator {op}, whose definition differs at opset {to}; it will not write a graph that may score differently. {remedy}");
        }
    }

    private static int Version(int[] changes, int opset) => changes.LastOrDefault(v => v <= opset, -1);
}
