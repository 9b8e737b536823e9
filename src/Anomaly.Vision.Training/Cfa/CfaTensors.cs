using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Anomaly.Vision.Training;

/// <summary>Copies between float spans and CPU float32 tensors through the tensors' byte spans.</summary>
internal static class CfaTensors
{
    /// <summary>A new CPU float32 tensor of <paramref name="shape"/> holding a copy of <paramref name="values"/>.</summary>
    public static Tensor FromArray(ReadOnlySpan<float> values, long[] shape)
    {
        var t = empty(shape, ScalarType.Float32);
        values.CopyTo(Span(t));
        return t;
    }

    /// <summary>The values of a float32 tensor (any device), in row-major order.</summary>
    public static float[] ToArray(Tensor t)
    {
        using var scope = NewDisposeScope();
        var cpu = t.detach().to(CPU).contiguous();
        var result = new float[cpu.numel()];
        MemoryMarshal.Cast<byte, float>(cpu.bytes).CopyTo(result);
        return result;
    }

    /// <summary>Copies a float32 tensor's values into <paramref name="destination"/>.</summary>
    public static void CopyTo(Tensor t, Span<float> destination)
    {
        using var scope = NewDisposeScope();
        var cpu = t.detach().to(CPU).contiguous();
        MemoryMarshal.Cast<byte, float>(cpu.bytes).CopyTo(destination);
    }

    /// <summary>The values of a contiguous CPU float32 tensor as a writable span.</summary>
    public static Span<float> Span(Tensor t) => MemoryMarshal.Cast<byte, float>(t.bytes);
}
