using System.Runtime.InteropServices;
using Google.Protobuf;
using Microsoft.ML.Anomaly.Vision.Onnx;

namespace Microsoft.ML.Anomaly.Vision.Export;

/// <summary>
/// Appends nodes and constant tensors to an ONNX graph under unique names, writing each operator in the form
/// its target opset defines (reductions take their axes as an attribute or, from the opset that changed them,
/// as an input). Detectors write their scoring heads with it; <see cref="DetectorOnnxExport"/> turns the
/// graph into a file or replays it into ML.NET's ONNX converter.
/// </summary>
internal sealed class OnnxGraphBuilder
{
    private readonly string _prefix;
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private int _counter;

    /// <summary>Creates a builder for operator set <paramref name="opset"/> whose tensor names start with <paramref name="prefix"/>.</summary>
    public OnnxGraphBuilder(int opset, string prefix)
    {
        Opset = opset;
        _prefix = prefix;
    }

    /// <summary>The default-domain operator set the graph is written for.</summary>
    public int Opset { get; }

    /// <summary>The graph written so far (inputs and outputs are the caller's).</summary>
    public GraphProto Graph { get; } = new();

    /// <summary>A new unique tensor name built from <paramref name="hint"/>.</summary>
    public string Name(string hint)
    {
        string name;
        do
            name = $"{_prefix}/{hint}_{_counter++}";
        while (!_names.Add(name));
        return name;
    }

    /// <summary>Reserves a name that came from elsewhere (a merged graph), so that no later name repeats it.</summary>
    public void Reserve(string name) => _names.Add(name);

    /// <summary>Appends a node and returns its first output.</summary>
    public string Node(string op, string[] inputs, params AttributeProto[] attributes) => NodeWithOutputs(op, inputs, 1, attributes)[0];

    /// <summary>Appends a node with <paramref name="outputCount"/> outputs and returns their names.</summary>
    public string[] NodeWithOutputs(string op, string[] inputs, int outputCount, params AttributeProto[] attributes)
    {
        string name = Name(op);
        var node = new NodeProto { Name = name, OpType = op };
        node.Input.AddRange(inputs);
        for (int i = 0; i < outputCount; i++)
            node.Output.Add(outputCount == 1 ? name : $"{name}:{i}");
        node.Attribute.AddRange(attributes);
        Graph.Node.Add(node);
        return [.. node.Output];
    }

    /// <summary>Adds a float constant of shape <paramref name="dims"/>.</summary>
    public string Floats(string hint, ReadOnlySpan<float> values, params long[] dims)
    {
        CheckCount(values.Length, dims);
        var tensor = new TensorProto { Name = Name(hint), DataType = (int)TensorProto.Types.DataType.Float };
        tensor.Dims.AddRange(dims);
        tensor.RawData = LittleEndianBytes(values);
        Graph.Initializer.Add(tensor);
        return tensor.Name;
    }

    /// <summary>Adds a float scalar constant.</summary>
    public string Scalar(string hint, float value) => Floats(hint, [value]);

    /// <summary>Adds an int64 constant of shape <paramref name="dims"/> (a 1-D tensor when no shape is given).</summary>
    public string Int64s(string hint, long[] values, params long[] dims)
    {
        if (dims.Length == 0)
            dims = [values.Length];
        CheckCount(values.Length, dims);
        var tensor = new TensorProto { Name = Name(hint), DataType = (int)TensorProto.Types.DataType.Int64 };
        tensor.Dims.AddRange(dims);
        tensor.Int64Data.AddRange(values);
        Graph.Initializer.Add(tensor);
        return tensor.Name;
    }

    public string Add(string a, string b) => Node("Add", [a, b]);

    public string Sub(string a, string b) => Node("Sub", [a, b]);

    public string Mul(string a, string b) => Node("Mul", [a, b]);

    public string Div(string a, string b) => Node("Div", [a, b]);

    public string MatMul(string a, string b) => Node("MatMul", [a, b]);

    public string Unary(string op, string x) => Node(op, [x]);

    /// <summary>Reshape to <paramref name="shape"/> (0 keeps that input dimension, −1 is inferred).</summary>
    public string Reshape(string x, params long[] shape) => Node("Reshape", [x, Int64s("shape", shape)]);

    public string Transpose(string x, params long[] perm) => Node("Transpose", [x], Ints("perm", perm));

    public string Concat(long axis, params string[] inputs) => Node("Concat", inputs, Int("axis", axis));

    /// <summary>Elements <paramref name="start"/> to <paramref name="end"/> (exclusive) along <paramref name="axis"/>.</summary>
    public string Slice(string x, long axis, long start, long end) =>
        Node("Slice", [x, Int64s("starts", [start]), Int64s("ends", [end]), Int64s("axes", [axis])]);

    /// <summary>A reduction (ReduceSum, ReduceMax, ReduceMin, ReduceSumSquare) over <paramref name="axes"/>, in the form of the target opset.</summary>
    public string Reduce(string op, string x, long[] axes, bool keepDims)
    {
        // ReduceSum took its axes as an input from opset 13, the other reductions from opset 18.
        int axesAsInputFrom = op == "ReduceSum" ? 13 : 18;
        return Opset >= axesAsInputFrom
            ? Node(op, [x, Int64s("axes", axes)], Int("keepdims", keepDims ? 1 : 0))
            : Node(op, [x], Ints("axes", axes), Int("keepdims", keepDims ? 1 : 0));
    }

    /// <summary>
    /// Applies the linear map <c>out = A · X · Bᵀ</c> to the last two dimensions of <paramref name="x"/> ([..., h, w]),
    /// where <paramref name="rows"/> is A [outH, h] and <paramref name="columns"/> is B [outW, w]; resampling and
    /// separable filtering of maps are such maps. Gives [..., outH, outW].
    /// </summary>
    public string Separable(string x, SeparableMap rows, SeparableMap columns)
    {
        string transposedColumns = Floats("columns", columns.Transposed(), columns.In, columns.Out);
        string y = MatMul(x, transposedColumns);
        return MatMul(Floats("rows", rows.Matrix, rows.Out, rows.In), y);
    }

    /// <summary>A row-major <paramref name="rows"/> × <paramref name="columns"/> matrix transposed.</summary>
    public static float[] TransposeMatrix(float[] matrix, int rows, int columns)
    {
        var transposed = new float[matrix.Length];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < columns; c++)
                transposed[c * rows + r] = matrix[r * columns + c];
        return transposed;
    }

    /// <summary><paramref name="values"/> in ONNX's raw_data layout (little-endian).</summary>
    public static ByteString LittleEndianBytes(ReadOnlySpan<float> values)
    {
        byte[] raw = MemoryMarshal.AsBytes(values).ToArray();
        if (!BitConverter.IsLittleEndian)
        {
            for (int i = 0; i < raw.Length; i += 4)
                Array.Reverse(raw, i, 4);
        }
        return UnsafeByteOperations.UnsafeWrap(raw);
    }

    /// <summary>The values of a float tensor, from its raw_data (little-endian) or its float_data.</summary>
    public static float[] ReadFloats(TensorProto tensor)
    {
        if (tensor.FloatData.Count > 0)
            return [.. tensor.FloatData];
        byte[] raw = tensor.RawData.ToByteArray();
        if (!BitConverter.IsLittleEndian)
        {
            for (int i = 0; i < raw.Length; i += 4)
                Array.Reverse(raw, i, 4);
        }
        return MemoryMarshal.Cast<byte, float>(raw).ToArray();
    }

    public static TensorShapeProto.Types.Dimension Dim(long value) => new() { DimValue = value };

    public static TensorShapeProto.Types.Dimension Dim(string name) => new() { DimParam = name };

    /// <summary>A float tensor's name, type and shape, for graph inputs and outputs.</summary>
    public static ValueInfoProto FloatTensorInfo(string name, params TensorShapeProto.Types.Dimension[] dims)
    {
        var shape = new TensorShapeProto();
        shape.Dim.AddRange(dims);
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape } },
        };
    }

    public static AttributeProto Int(string name, long value) =>
        new() { Name = name, I = value, Type = AttributeProto.Types.AttributeType.Int };

    public static AttributeProto Float(string name, float value) =>
        new() { Name = name, F = value, Type = AttributeProto.Types.AttributeType.Float };

    public static AttributeProto Ints(string name, params long[] values)
    {
        var attribute = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        attribute.Ints.AddRange(values);
        return attribute;
    }

    private static void CheckCount(int count, long[] dims)
    {
        long expected = dims.Aggregate(1L, (a, b) => a * b);
        if (expected != count)
            throw new ArgumentException($"{count} values do not fill a tensor of shape [{string.Join(", ", dims)}].", nameof(count));
    }
}

/// <summary>A linear map between 1-D signals of lengths <see cref="In"/> and <see cref="Out"/>, row-major [Out, In].</summary>
internal sealed class SeparableMap
{
    public SeparableMap(float[] matrix, int @in, int @out)
    {
        Matrix = matrix;
        In = @in;
        Out = @out;
    }

    public float[] Matrix { get; }

    public int In { get; }

    public int Out { get; }

    /// <summary>
    /// The map of one axis of <see cref="AnomalyMapMath.BilinearResize"/>: column j is the resampled unit signal
    /// e_j, so the matrix reproduces the resampling exactly (bilinear resampling is separable).
    /// </summary>
    public static SeparableMap Bilinear(int size, int outSize, bool alignCorners)
    {
        var matrix = new float[outSize * size];
        var unit = new float[size];
        var column = new float[outSize];
        for (int j = 0; j < size; j++)
        {
            unit[j] = 1f;
            AnomalyMapMath.BilinearResize(unit, 1, size, column, 1, outSize, alignCorners);
            unit[j] = 0f;
            for (int i = 0; i < outSize; i++)
                matrix[i * size + j] = column[i];
        }
        return new SeparableMap(matrix, size, outSize);
    }

    /// <summary>
    /// The map of one axis of <see cref="GaussianBlur.Apply"/> (reflect padding included): column j is the
    /// blurred unit signal e_j.
    /// </summary>
    public static SeparableMap Blur(GaussianBlur blur, int size)
    {
        var matrix = new float[size * size];
        var unit = new float[size];
        var column = new float[size];
        for (int j = 0; j < size; j++)
        {
            unit[j] = 1f;
            // A 1-row map: the vertical pass reflects onto the single row, so this is the horizontal pass alone.
            blur.Apply(unit, 1, size, column);
            unit[j] = 0f;
            for (int i = 0; i < size; i++)
                matrix[i * size + j] = column[i];
        }
        return new SeparableMap(matrix, size, size);
    }

    /// <summary>The composition <c>this ∘ first</c> (first applied first), computed in double precision.</summary>
    public SeparableMap After(SeparableMap first)
    {
        if (first.Out != In)
            throw new ArgumentException($"A map from {first.In} to {first.Out} cannot feed a map from {In}.", nameof(first));
        var matrix = new float[Out * first.In];
        for (int i = 0; i < Out; i++)
        {
            for (int j = 0; j < first.In; j++)
            {
                double sum = 0;
                for (int k = 0; k < In; k++)
                    sum += (double)Matrix[i * In + k] * first.Matrix[k * first.In + j];
                matrix[i * first.In + j] = (float)sum;
            }
        }
        return new SeparableMap(matrix, first.In, Out);
    }

    /// <summary>The matrix transposed, row-major [In, Out].</summary>
    public float[] Transposed() => OnnxGraphBuilder.TransposeMatrix(Matrix, Out, In);
}
