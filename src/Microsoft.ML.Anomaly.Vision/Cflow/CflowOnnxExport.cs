using Anomaly.Vision.Training;
using Microsoft.ML.Anomaly.Vision.Export;
using TorchSharp;
using static Microsoft.ML.Anomaly.Vision.Export.OnnxGraphBuilder;
using static TorchSharp.torch;

namespace Microsoft.ML.Anomaly.Vision.Cflow;

/// <summary>
/// CFlow's scoring head as ONNX nodes, computing what <see cref="CflowModel.LogLikelihoods"/> and
/// <see cref="CflowAnomalyMapGenerator"/> compute. Per layer the feature fibers [B, positions, C] run forward
/// through the coupling blocks; each block's condition (the positional code through the subnet's first layer,
/// bias included) is a constant per position. The log-likelihood per dimension is
/// (log-det − ½‖z‖² − C·log √(2π)) / C. The map step turns each layer's log-likelihoods into probabilities
/// (<see cref="Probabilities"/>, the one place that fixes their reference), upsamples them bilinearly with aligned
/// corners as constant matrix products, sums the layers and subtracts the sum from its top (the layer count with Fit-time references, else its maximum).
/// </summary>
internal static class CflowOnnxExport
{
    private static readonly double LogSqrtTwoPi = Math.Log(Math.Sqrt(2 * Math.PI));

    public static (string Score, string Map) WriteHead(OnnxGraphBuilder graph, CflowModel model, IReadOnlyList<string> layerMaps, int height, int width)
    {
        TorchRuntime.EnsureAvailable();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var logLikelihoods = new string[layerMaps.Count];
        for (int l = 0; l < layerMaps.Count; l++)
            logLikelihoods[l] = LogLikelihood(graph, model, l, layerMaps[l]);

        string? sum = null;
        for (int l = 0; l < layerMaps.Count; l++)
        {
            var shape = model.Layers[l];
            string probabilities = graph.Reshape(Probabilities(graph, logLikelihoods[l], model.LogLikelihoodReferences?[l]), 0, shape.Height, shape.Width);
            string upsampled = graph.Separable(probabilities,
                SeparableMap.Bilinear(shape.Height, height, alignCorners: true), SeparableMap.Bilinear(shape.Width, width, alignCorners: true));
            sum = sum is null ? upsampled : graph.Add(sum, upsampled);
        }
        string top = model.LogLikelihoodReferences is null
            ? graph.Reduce("ReduceMax", sum!, [1, 2], keepDims: true)
            : graph.Scalar("top", layerMaps.Count);
        string map = graph.Sub(top, sum!);
        return (graph.Reduce("ReduceMax", map, [1, 2], keepDims: false), map);
    }

    /// <summary>
    /// One layer's log-likelihoods [B, positions] as probabilities in (0, 1], as <see cref="CflowAnomalyMapGenerator"/>
    /// makes them: exp(min(log-likelihood − reference, 0)) with the Fit-time reference, or, for a model saved without
    /// references, shifted by the image's own maximum and exponentiated.
    /// </summary>
    private static string Probabilities(OnnxGraphBuilder graph, string logLikelihoods, float? reference) =>
        reference is float fixedReference
            ? graph.Unary("Exp", graph.Node("Min", [graph.Sub(logLikelihoods, graph.Scalar("reference", fixedReference)), graph.Scalar("zero", 0f)]))
            : graph.Unary("Exp", graph.Sub(logLikelihoods, graph.Reduce("ReduceMax", logLikelihoods, [1], keepDims: true)));

    /// <summary>The log-likelihood per dimension [B, positions] of layer <paramref name="layer"/>'s map [B, C, h, w].</summary>
    private static string LogLikelihood(OnnxGraphBuilder graph, CflowModel model, int layer, string layerMap)
    {
        var shape = model.Layers[layer];
        int positions = shape.Height * shape.Width;
        float[] code = PositionalEncoding.Create(model.ConditionVectorSize, shape.Height, shape.Width);   // [P, positions]
        string x = graph.Transpose(graph.Reshape(layerMap, 0, shape.Channels, positions), 0, 2, 1);      // [B, positions, C]
        string? logDet = null;
        foreach (AllInOneCouplingBlock block in model.Flows[layer].Blocks)
        {
            (x, string blockLogDet) = Forward(graph, block, x, code, positions);
            logDet = logDet is null ? blockLogDet : graph.Add(logDet, blockLogDet);
        }
        string halfSquaredNorm = graph.Mul(graph.Reduce("ReduceSumSquare", x, [2], keepDims: false), graph.Scalar("half", 0.5f));
        string logProbability = graph.Sub(graph.Sub(logDet!, halfSquaredNorm), graph.Scalar("log_normaliser", (float)(shape.Channels * LogSqrtTwoPi)));
        return graph.Div(logProbability, graph.Scalar("channels", shape.Channels));
    }

    /// <summary>One coupling block forward on fibers [B, positions, C]; returns y and the block's log-determinant [B, positions].</summary>
    private static (string Y, string LogDet) Forward(OnnxGraphBuilder graph, AllInOneCouplingBlock block, string x, float[] code, int positions)
    {
        int split1 = block.Split1, split2 = block.Split2, hidden = block.Hidden, inputs = block.SubnetInputs, condition = block.ConditionSize, channels = block.Channels;
        float[] weight1 = Values(block.Weight1), bias1 = Values(block.Bias1), weight2 = Values(block.Weight2), bias2 = Values(block.Bias2);

        var featureWeight = new float[split1 * hidden];          // [split1, hidden]
        var conditionHidden = new float[positions * hidden];     // [positions, hidden]
        for (int o = 0; o < hidden; o++)
        {
            for (int i = 0; i < split1; i++)
                featureWeight[i * hidden + o] = weight1[o * inputs + i];
            for (int p = 0; p < positions; p++)
            {
                double sum = bias1[o];
                for (int c = 0; c < condition; c++)
                    sum += (double)weight1[o * inputs + split1 + c] * code[c * positions + p];
                conditionHidden[p * hidden + o] = (float)sum;
            }
        }
        var scaledWeight2 = new float[hidden * 2 * split2];      // [hidden, 2·split2], times the coupling scale
        for (int o = 0; o < 2 * split2; o++)
            for (int i = 0; i < hidden; i++)
                scaledWeight2[i * 2 * split2 + o] = weight2[o * hidden + i] * AllInOneCouplingBlock.CouplingScale;
        float[] scaledBias2 = bias2.Select(b => b * AllInOneCouplingBlock.CouplingScale).ToArray();

        string x1 = graph.Slice(x, 2, 0, split1), x2 = graph.Slice(x, 2, split1, channels);
        string subnetHidden = graph.Unary("Relu", graph.Add(graph.MatMul(x1, graph.Floats("subnet_weight1", featureWeight, split1, hidden)),
            graph.Floats("condition_hidden", conditionHidden, positions, hidden)));
        string a = graph.Add(graph.MatMul(subnetHidden, graph.Floats("subnet_weight2", scaledWeight2, hidden, 2 * split2)),
            graph.Floats("subnet_bias2", scaledBias2, 2 * split2));
        string s = graph.Mul(graph.Unary("Tanh", graph.Slice(a, 2, 0, split2)), graph.Scalar("clamp", block.Clamp));
        string transformed = graph.Add(graph.Mul(x2, graph.Unary("Exp", s)), graph.Slice(a, 2, split2, 2 * split2));

        using var scale = block.GlobalScaleActivation();
        float logScaleSum = scale.log().sum().item<float>();
        string u = graph.Add(graph.Mul(graph.Concat(2, x1, transformed), graph.Floats("global_scale", Values(scale), channels)),
            graph.Floats("global_offset", Values(block.GlobalOffset), channels));
        string y = block.Rotation is Tensor rotation
            ? graph.MatMul(u, graph.Floats("rotation_t", TransposeMatrix(Values(rotation), channels, channels), channels, channels))
            : graph.Node("Gather", [u, graph.Int64s("permutation", block.Permutation!.to(ScalarType.Int64, CPU).data<long>().ToArray())], Int("axis", 2));
        string logDet = graph.Add(graph.Reduce("ReduceSum", s, [2], keepDims: false), graph.Scalar("log_scale_sum", logScaleSum));
        return (y, logDet);
    }

    private static float[] Values(Tensor tensor)
    {
        var values = new float[tensor.numel()];
        CflowModel.CopyTo(tensor.detach(), values);
        return values;
    }
}
