using Microsoft.ML.Anomaly.Vision.Internal;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Base of the image anomaly detection estimators: holds the options and checks schemas; a detector
/// implements <see cref="Fit(IDataView)"/>.
/// </summary>
/// <typeparam name="TTransformer">The transformer the estimator fits.</typeparam>
public abstract class ImageAnomalyEstimatorBase<TTransformer> : IEstimator<TTransformer>
    where TTransformer : ImageAnomalyTransformerBase
{
    /// <summary>Creates the estimator; <paramref name="options"/> are validated here.</summary>
    /// <param name="env">The ML.NET environment.</param>
    /// <param name="registrationName">Name of the component (for messages), e.g. the class name.</param>
    /// <param name="options">The detector's options.</param>
    /// <param name="producesMap">Whether the fitted transformer will make anomaly maps.</param>
    private protected ImageAnomalyEstimatorBase(IHostEnvironment env, string registrationName, ImageAnomalyDetectorOptions options, bool producesMap)
    {
        ArgumentNullException.ThrowIfNull(env);
        ArgumentException.ThrowIfNullOrEmpty(registrationName);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(nameof(options));
        Host = env.Register(registrationName);
        DetectorOptions = options;
        ProducesMap = producesMap;
    }

    /// <summary>The component's host (environment registration).</summary>
    private protected IHost Host { get; }

    /// <summary>The options the estimator was created with.</summary>
    private protected ImageAnomalyDetectorOptions DetectorOptions { get; }

    /// <summary>Whether the fitted transformer will make anomaly maps.</summary>
    private protected bool ProducesMap { get; }

    /// <summary>Trains the detector on <paramref name="input"/> (images of normal samples only).</summary>
    /// <param name="input">Training data with the input column.</param>
    /// <returns>The fitted transformer.</returns>
    public abstract TTransformer Fit(IDataView input);

    /// <summary>
    /// Returns the schema after the fitted transformer: the input columns plus Score, AnomalyMap (when the
    /// detector makes maps and the column is not left out) and PredictedLabel (when a threshold is set).
    /// </summary>
    /// <param name="inputSchema">Schema of the data to transform.</param>
    /// <exception cref="ArgumentOutOfRangeException">The input column is missing or is neither an image nor a text column (the message names it and its type).</exception>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        ImageAnomalyDetectorOptions options = DetectorOptions;
        if (!inputSchema.TryFindColumn(options.InputColumnName, out SchemaShape.Column input))
            throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Input column '{options.InputColumnName}' was not found in the data.");
        if (input.Kind != SchemaShape.Column.VectorKind.Scalar || !ImageColumnReader.IsSupported(input.ItemType))
            throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Input column '{input.Name}' has type {input.GetTypeString()}, but an image column (MLImage, e.g. from LoadImages) or a text column of image file paths is required.");

        var columns = inputSchema.ToDictionary(c => c.Name);
        columns[options.ScoreColumnName] = new SchemaShape.Column(options.ScoreColumnName, SchemaShape.Column.VectorKind.Scalar, NumberDataViewType.Single, false, null);
        if (ProducesMap && options.AnomalyMapColumnName is string map)
            columns[map] = new SchemaShape.Column(map, SchemaShape.Column.VectorKind.Vector, NumberDataViewType.Single, false, null);
        if (options.Threshold.HasValue)
            columns[options.PredictedLabelColumnName] = new SchemaShape.Column(options.PredictedLabelColumnName, SchemaShape.Column.VectorKind.Scalar, BooleanDataViewType.Instance, false, null);
        return new SchemaShape(columns.Values);
    }
}
