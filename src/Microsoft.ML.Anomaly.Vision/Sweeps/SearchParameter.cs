using System.Globalization;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// The values one setting of a sweep may take: a list of choices or a numeric range. Grid search takes every
/// grid value; random search draws a value (a choice uniformly, a range uniformly between its bounds).
/// A single value or an array converts implicitly: <c>GammaC = 2</c>, <c>GammaC = new[] { 1, 2, 4 }</c>.
/// </summary>
/// <typeparam name="T">The setting's type.</typeparam>
public abstract class SearchParameter<T>
{
    private protected SearchParameter()
    {
    }

    /// <summary>The values grid search tries, in order.</summary>
    public abstract IReadOnlyList<T> GridValues { get; }

    /// <summary>A single value: the setting is fixed.</summary>
    /// <param name="value">The value.</param>
    public static implicit operator SearchParameter<T>(T value) => new ChoiceParameter<T>([value]);

    /// <summary>A choice among <paramref name="values"/>.</summary>
    /// <param name="values">The values (at least one).</param>
    public static implicit operator SearchParameter<T>(T[] values) => new ChoiceParameter<T>(values);

    /// <summary>Draws one value for random search.</summary>
    internal abstract T Sample(ref DeterministicRandom random);

    /// <summary>A short text of the range or choices, for messages.</summary>
    public abstract override string ToString();
}

/// <summary>Creates <see cref="SearchParameter{T}"/> values: choices and ranges.</summary>
public static class SearchParameter
{
    /// <summary>A choice among <paramref name="values"/> (grid search tries each, random search draws one uniformly).</summary>
    /// <typeparam name="T">The setting's type.</typeparam>
    /// <param name="values">The values (at least one).</param>
    public static SearchParameter<T> Choice<T>(params T[] values) => new ChoiceParameter<T>(values);

    /// <summary>
    /// Integers from <paramref name="min"/> to <paramref name="max"/>: random search draws any of them uniformly;
    /// grid search tries <paramref name="gridPoints"/> evenly spaced ones (rounded, both bounds included).
    /// </summary>
    /// <param name="min">Smallest value.</param>
    /// <param name="max">Largest value (at least <paramref name="min"/>).</param>
    /// <param name="gridPoints">Values grid search tries (at least 1).</param>
    public static SearchParameter<int> Range(int min, int max, int gridPoints = 3) => new IntRangeParameter(min, max, gridPoints);

    /// <summary>
    /// Numbers from <paramref name="min"/> to <paramref name="max"/>: random search draws uniformly between them;
    /// grid search tries <paramref name="gridPoints"/> evenly spaced ones (both bounds included).
    /// </summary>
    /// <param name="min">Smallest value (finite).</param>
    /// <param name="max">Largest value (finite, at least <paramref name="min"/>).</param>
    /// <param name="gridPoints">Values grid search tries (at least 1).</param>
    public static SearchParameter<float> Range(float min, float max, int gridPoints = 3) => new FloatRangeParameter(min, max, gridPoints);

    /// <summary><paramref name="points"/> values from <paramref name="min"/> to <paramref name="max"/>, both included (just <paramref name="min"/> for one point).</summary>
    internal static IEnumerable<double> EvenlySpaced(double min, double max, int points) =>
        points == 1 ? [min] : Enumerable.Range(0, points).Select(i => min + ((max - min) * i / (points - 1)));

    /// <summary>A value as text for leaderboards and <c>sweep.json</c>: layer lists joined with '+', numbers invariant.</summary>
    internal static string Format(object? value) => value switch
    {
        null => "",
        string[] layers => string.Join('+', layers),
        float f => f.ToString("G6", CultureInfo.InvariantCulture),
        IFormattable formattable => formattable.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };
}

internal sealed class ChoiceParameter<T> : SearchParameter<T>
{
    private readonly T[] _values;

    public ChoiceParameter(T[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Length == 0)
            throw new ArgumentException("A choice needs at least one value.", nameof(values));
        _values = (T[])values.Clone();
    }

    public override IReadOnlyList<T> GridValues => _values;

    internal override T Sample(ref DeterministicRandom random) => _values[random.NextInt(_values.Length)];

    public override string ToString() => "{" + string.Join(", ", _values.Select(v => SearchParameter.Format(v))) + "}";
}

internal sealed class IntRangeParameter : SearchParameter<int>
{
    private readonly int _min;
    private readonly int _max;
    private readonly int[] _grid;

    public IntRangeParameter(int min, int max, int gridPoints)
    {
        if (max < min)
            throw new ArgumentException($"The range's maximum {max} is below its minimum {min}.", nameof(max));
        ArgumentOutOfRangeException.ThrowIfLessThan(gridPoints, 1);
        _min = min;
        _max = max;
        _grid = SearchParameter.EvenlySpaced(min, max, gridPoints).Select(v => (int)Math.Round(v)).Distinct().ToArray();
    }

    public override IReadOnlyList<int> GridValues => _grid;

    internal override int Sample(ref DeterministicRandom random) => _min + random.NextInt(_max - _min + 1);

    public override string ToString() => $"[{_min}, {_max}]";
}

internal sealed class FloatRangeParameter : SearchParameter<float>
{
    private readonly float _min;
    private readonly float _max;
    private readonly float[] _grid;

    public FloatRangeParameter(float min, float max, int gridPoints)
    {
        if (!float.IsFinite(min) || !float.IsFinite(max) || max < min)
            throw new ArgumentException($"The range [{min}, {max}] needs finite bounds with the minimum first.", nameof(max));
        ArgumentOutOfRangeException.ThrowIfLessThan(gridPoints, 1);
        _min = min;
        _max = max;
        _grid = SearchParameter.EvenlySpaced(min, max, gridPoints).Select(v => (float)v).Distinct().ToArray();
    }

    public override IReadOnlyList<float> GridValues => _grid;

    internal override float Sample(ref DeterministicRandom random) => (float)random.Uniform(_min, _max);

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"[{_min}, {_max}]");
}
