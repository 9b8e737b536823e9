using Anomaly.Vision.Training;
using Microsoft.ML.Anomaly.Vision.Export;
using static Microsoft.ML.Anomaly.Vision.Export.OnnxGraphBuilder;

namespace Microsoft.ML.Anomaly.Vision.Cfa;

/// <summary>
/// CFA's scoring head as ONNX nodes, computing what <see cref="CfaModel.Describe"/> and
/// <see cref="CfaAnomalyMapGenerator"/> compute: the descriptor (3×3 average pooling, later layers resized
/// bilinearly onto the first layer's grid, 1×1 convolution; the coordinate channels' share of the convolution is
/// a constant added to it), squared distances to the memory bank (|f|² + |m|² − 2·f·m), the k smallest (TopK),
/// the softmin-weighted nearest distance, then bilinear upsampling and the Gaussian blur as two constant matrix
/// products per axis, and the map's maximum as the score.
/// </summary>
internal static class CfaOnnxExport
{
    public static (string Score, string Map) WriteHead(OnnxGraphBuilder graph, CfaModel model, IReadOnlyList<string> layerMaps, int height, int width)
    {
        int gridHeight = model.GridHeight, gridWidth = model.GridWidth, channels = model.DescriptorChannels, inputs = model.InputChannels;
        var parts = new string[layerMaps.Count];
        for (int l = 0; l < layerMaps.Count; l++)
        {
            var shape = model.Layers[l];
            string pooled = graph.Node("AveragePool", [layerMaps[l]],
                Ints("kernel_shape", 3, 3), Ints("strides", 1, 1), Ints("pads", 1, 1, 1, 1), Int("count_include_pad", 1));
            parts[l] = l == 0 ? pooled : graph.Separable(pooled,
                SeparableMap.Bilinear(shape.Height, gridHeight, alignCorners: false), SeparableMap.Bilinear(shape.Width, gridWidth, alignCorners: false));
        }

        ReadOnlySpan<float> weight = model.DescriptorWeight;
        var convolution = new float[channels * inputs];
        for (int d = 0; d < channels; d++)
            weight.Slice(d * (inputs + 2), inputs).CopyTo(convolution.AsSpan(d * inputs, inputs));
        string features = graph.Node("Conv", [graph.Concat(1, parts), graph.Floats("descriptor_weight", convolution, channels, inputs, 1, 1)]);
        features = graph.Add(features, graph.Floats("descriptor_position", PositionTerm(model), 1, channels, gridHeight, gridWidth));

        // [B, D, h, w] → patch-major [B, P, D].
        int patches = gridHeight * gridWidth;
        string patchFeatures = graph.Transpose(graph.Reshape(features, 0, channels, patches), 0, 2, 1);

        string nearest = NearestSquaredDistances(graph, patchFeatures, model.MemoryBank, model.BankSize, channels, model.NumNearestNeighbors, featureAxis: 2);

        // Softmin weight of the nearest distance times that distance: s0 / Σ exp(s0 − s_j), with s = √max(d, 0).
        string root = graph.Unary("Sqrt", graph.Unary("Relu", nearest));
        string smallest = graph.Reduce("ReduceMin", root, [2], keepDims: true);
        string normaliser = graph.Reduce("ReduceSum", graph.Unary("Exp", graph.Sub(smallest, root)), [2], keepDims: true);
        string patchScores = graph.Reshape(graph.Div(smallest, normaliser), 0, gridHeight, gridWidth);

        var blurRows = SeparableMap.Blur(new GaussianBlur(CfaAnomalyMapGenerator.BlurSigma), height);
        var blurColumns = SeparableMap.Blur(new GaussianBlur(CfaAnomalyMapGenerator.BlurSigma), width);
        string map = graph.Separable(patchScores,
            blurRows.After(SeparableMap.Bilinear(gridHeight, height, alignCorners: false)),
            blurColumns.After(SeparableMap.Bilinear(gridWidth, width, alignCorners: false)));
        return (graph.Reduce("ReduceMax", map, [1, 2], keepDims: false), map);
    }

    /// <summary>
    /// The <paramref name="k"/> smallest squared distances |f|² + |m|² − 2·f·m of each feature vector (along
    /// <paramref name="featureAxis"/>, the last axis) to the bank's entries, in ascending order. They are chosen on
    /// |m|² − 2·f·m (|f|² is the same along a row), so only the k chosen values get |f|² added; −2 is folded into the
    /// bank (an exact scaling), leaving one pass over the features × bank matrix before TopK.
    /// </summary>
    public static string NearestSquaredDistances(OnnxGraphBuilder graph, string features, ReadOnlySpan<float> bank, int bankSize,
        int channels, int k, long featureAxis)
    {
        var scaledBank = new float[channels * bankSize];   // [D, M], times −2
        var bankNorms = new float[bankSize];
        for (int m = 0; m < bankSize; m++)
        {
            double norm = 0;
            for (int d = 0; d < channels; d++)
            {
                float v = bank[m * channels + d];
                scaledBank[d * bankSize + m] = -2f * v;
                norm += (double)v * v;
            }
            bankNorms[m] = (float)norm;
        }
        string partial = graph.Add(graph.MatMul(features, graph.Floats("bank_times_minus_two", scaledBank, channels, bankSize)),
            graph.Floats("bank_norms", bankNorms, bankSize));
        string smallestPartial = graph.NodeWithOutputs("TopK", [partial, graph.Int64s("k", [k])], 2,
            Int("axis", -1), Int("largest", 0), Int("sorted", 1))[0];
        return graph.Add(smallestPartial, graph.Reduce("ReduceSumSquare", features, [featureAxis], keepDims: true));
    }

    /// <summary>The descriptor's bias plus its weights on the two coordinate channels, per output channel and grid position.</summary>
    private static float[] PositionTerm(CfaModel model)
    {
        int h = model.GridHeight, w = model.GridWidth, channels = model.DescriptorChannels, inputs = model.InputChannels;
        TorchRuntime.EnsureAvailable();
        float[] coordinates;
        using (var tensor = Descriptor.Coordinates(h, w, TorchSharp.torch.CPU))
            coordinates = CfaTensors.ToArray(tensor);
        ReadOnlySpan<float> weight = model.DescriptorWeight, bias = model.DescriptorBias;
        var term = new float[channels * h * w];
        for (int d = 0; d < channels; d++)
        {
            double rowWeight = weight[d * (inputs + 2) + inputs], columnWeight = weight[d * (inputs + 2) + inputs + 1];
            for (int p = 0; p < h * w; p++)
                term[d * h * w + p] = (float)(bias[d] + rowWeight * coordinates[p] + columnWeight * coordinates[h * w + p]);
        }
        return term;
    }
}
