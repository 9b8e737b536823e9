using Microsoft.ML.Data;
using Microsoft.ML.Model.OnnxConverter;

namespace Microsoft.ML.Anomaly.Vision;

public abstract partial class ImageAnomalyTransformerBase
{
    /// <summary>Writes the detector into ML.NET's ONNX converter (<c>mlContext.Model.ConvertToOnnx</c>).</summary>
    private protected virtual void SaveAsOnnx(OnnxContext ctx) =>
        throw new NotSupportedException($"{GetType().Name} cannot be exported to ONNX.");

    /// <summary>
    /// Takes part in <c>ConvertToOnnx</c>, which walks a pipeline's output back through its transforms. It always
    /// answers that it can save, so that a detector that cannot be exported says why instead of ML.NET stopping
    /// silently.
    /// </summary>
    private sealed partial class BatchScoringDataView : ITransformCanSaveOnnx
    {
        public IDataView Source => _source;

        public bool CanSaveOnnx(OnnxContext ctx) => true;

        public void SaveAsOnnx(OnnxContext ctx) => _parent.SaveAsOnnx(ctx);

        void ICanSaveModel.Save(ModelSaveContext ctx) => ((ICanSaveModel)_parent).Save(ctx);
    }
}
