using TorchSharp;
using static TorchSharp.torch;

namespace Anomaly.Vision.Training;

/// <summary>
/// Tensor arithmetic with numbers in which every TorchSharp <see cref="Scalar"/> outlives the native call that reads it.
/// </summary>
/// <remarks>
/// TorchSharp 0.107 hands a Scalar's handle to LibTorch without keeping the Scalar alive, and a Scalar's finalizer frees
/// its native value. A Scalar made on the fly (an implicit conversion such as <c>t - 0.5f</c> or <c>t.div_(n)</c>, and
/// the overloads that make one inside TorchSharp: <c>Tensor.add(Tensor)</c> and <c>add_(Tensor)</c> with their alpha of 1,
/// <c>square()</c>, every operator with a number, <c>F.softplus</c>, <c>arange</c>, the optimizers' steps) is unreachable
/// once its handle has been read, so a garbage collection on any other thread can free it while LibTorch uses it
/// ("Unknown scalar type", or a wrong value). A DisposeScope does not track Scalars. Here each Scalar is held by a
/// <c>using</c> (or, for the constants, a static field) until the call has returned; the same numbers reach LibTorch as
/// the operators would pass (integers as integers, floating-point values as doubles), so results do not change. The
/// library's compiled code is checked for any other way of making a Scalar by a test that reads its IL.
/// </remarks>
internal static class ScalarMath
{
    /// <summary>add's alpha (and a + b's): held for the life of the process.</summary>
    private static readonly Scalar One = 1.ToScalar();

    /// <summary>The exponent of <see cref="Square"/>.</summary>
    private static readonly Scalar Two = 2.ToScalar();

    /// <summary>a + b (what <c>a + b</c> computes).</summary>
    public static Tensor Add(this Tensor a, Tensor b) => a.add(b, One);

    /// <summary>a += b, in place.</summary>
    public static Tensor AddInPlace(this Tensor a, Tensor b) => a.add_(b, One);

    /// <summary>a + b.</summary>
    public static Tensor Add(this Tensor a, double b)
    {
        using var value = b.ToScalar();
        return a.add(value, One);
    }

    /// <summary>a += b, in place.</summary>
    public static Tensor AddInPlace(this Tensor a, double b)
    {
        using var value = b.ToScalar();
        return a.add_(value, One);
    }

    /// <summary>a += b, in place, for integer tensors too.</summary>
    public static Tensor AddInPlace(this Tensor a, long b)
    {
        using var value = b.ToScalar();
        return a.add_(value, One);
    }

    /// <summary>a − b.</summary>
    public static Tensor Sub(this Tensor a, double b)
    {
        using var value = b.ToScalar();
        return a.sub(value);
    }

    /// <summary>a −= b, in place.</summary>
    public static Tensor SubInPlace(this Tensor a, double b)
    {
        using var value = b.ToScalar();
        return a.sub_(value);
    }

    /// <summary>a − b for a number a, as (−b) + a (what <c>a - b</c> computes).</summary>
    public static Tensor SubFrom(double a, Tensor b)
    {
        using var value = a.ToScalar();
        var negated = b.negative();
        var result = negated.add(value, One);
        GC.KeepAlive(negated);
        return result;
    }

    /// <summary>a · b.</summary>
    public static Tensor Mul(this Tensor a, double b)
    {
        using var value = b.ToScalar();
        return a.mul(value);
    }

    /// <summary>a · b for an integer b.</summary>
    public static Tensor Mul(this Tensor a, long b)
    {
        using var value = b.ToScalar();
        return a.mul(value);
    }

    /// <summary>a ·= b, in place.</summary>
    public static Tensor MulInPlace(this Tensor a, double b)
    {
        using var value = b.ToScalar();
        return a.mul_(value);
    }

    /// <summary>a ·= b, in place, for an integer b.</summary>
    public static Tensor MulInPlace(this Tensor a, long b)
    {
        using var value = b.ToScalar();
        return a.mul_(value);
    }

    /// <summary>a / b.</summary>
    public static Tensor Div(this Tensor a, double b)
    {
        using var value = b.ToScalar();
        return a.div(value);
    }

    /// <summary>a / b for an integer b.</summary>
    public static Tensor Div(this Tensor a, long b)
    {
        using var value = b.ToScalar();
        return a.div(value);
    }

    /// <summary>a /= b, in place.</summary>
    public static Tensor DivInPlace(this Tensor a, double b)
    {
        using var value = b.ToScalar();
        return a.div_(value);
    }

    /// <summary>a /= b, in place, for an integer b.</summary>
    public static Tensor DivInPlace(this Tensor a, long b)
    {
        using var value = b.ToScalar();
        return a.div_(value);
    }

    /// <summary>a² (what <c>square()</c> and <c>pow(2)</c> compute).</summary>
    public static Tensor Square(this Tensor a) => a.pow(Two);

    /// <summary>Elements where a &gt; b.</summary>
    public static Tensor Greater(this Tensor a, double b)
    {
        using var value = b.ToScalar();
        return a.gt(value);
    }

    /// <summary>min(a, b) elementwise.</summary>
    public static Tensor ClampMax(this Tensor a, double b)
    {
        using var value = b.ToScalar();
        return a.clamp_max(value);
    }
}
