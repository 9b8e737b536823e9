using Microsoft.ML.Anomaly.Vision.Internal;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Anomaly.Vision;

public abstract partial class ImageAnomalyTransformerBase
{
    /// <summary>Makes the getter of output column <paramref name="column"/> reading from <paramref name="results"/>.</summary>
    private Delegate MakeOutputGetter(OutputColumn column, RowResults results)
    {
        switch (column.Kind)
        {
            case OutputKind.Score:
                return (ValueGetter<float>)((ref float value) => value = results.Scores[results.Current()]);
            case OutputKind.Map:
                int size = InputHeight * InputWidth;
                return (ValueGetter<VBuffer<float>>)((ref VBuffer<float> value) =>
                {
                    int slot = results.Current();
                    var editor = VBufferEditor.Create(ref value, size);
                    results.Maps.AsSpan(slot * size, size).CopyTo(editor.Values);
                    value = editor.Commit();
                });
            default:
                float threshold = _threshold!.Value;
                return (ValueGetter<bool>)((ref bool value) => value = results.Scores[results.Current()] >= threshold);
        }
    }

    /// <summary>Scores of the current row of a cursor, computed on demand and kept for the row.</summary>
    private abstract class RowResults
    {
        protected RowResults(ImageAnomalyTransformerBase parent, int capacity)
        {
            Parent = parent;
            ImageSize = 3 * parent.InputHeight * parent.InputWidth;
            Images = new float[capacity * ImageSize];
            Scores = new float[capacity];
            Maps = parent.ProducesMap ? new float[capacity * parent.InputHeight * parent.InputWidth] : [];
        }

        protected ImageAnomalyTransformerBase Parent { get; }

        protected int ImageSize { get; }

        protected float[] Images { get; set; }

        public float[] Scores { get; }

        public float[] Maps { get; }

        /// <summary>Makes sure the current row is scored; returns its slot in <see cref="Scores"/> and <see cref="Maps"/>.</summary>
        public abstract int Current();

        protected void Score(int count)
        {
            Parent.Host.CheckAlive();
            int mapSize = Parent.ProducesMap ? Parent.InputHeight * Parent.InputWidth : 0;
            Parent.ScoreBatch(Images.AsSpan(0, count * ImageSize), count, Scores.AsSpan(0, count), Maps.AsSpan(0, count * mapSize));
        }
    }

    /// <summary>One row at a time: the row's image is read and scored once per row position.</summary>
    private sealed class SingleRowResults : RowResults
    {
        private readonly DataViewRow _row;
        private readonly ImageColumnReader _reader;
        private long _scoredPosition = -1;

        public SingleRowResults(ImageAnomalyTransformerBase parent, DataViewRow row, DataViewSchema.Column imageColumn)
            : base(parent, 1)
        {
            _row = row;
            _reader = new ImageColumnReader(row, imageColumn, parent.MaxImagePixels);
        }

        public override int Current()
        {
            long position = _row.Position;
            if (position != _scoredPosition || position < 0)
            {
                _reader.Read(Images, Parent.InputHeight, Parent.InputWidth);
                Score(1);
                _scoredPosition = position;
            }
            return 0;
        }
    }

    /// <summary>
    /// Batches for a cursor over a whole data view: a second cursor over the same source, holding only the
    /// image column, runs ahead and reads the images of the next rows, which are scored together. While a batch is
    /// scored, the next one's files are decoded in the background.
    /// </summary>
    /// <remarks>
    /// Design: rows are matched between the two cursors by position, which holds only when the source gives every cursor
    /// the same rows in the same order. A source may not (an enumerable whose order changes between enumerations, a query
    /// without an order), and a row would then get another row's score. So each row's image value is read from both
    /// cursors and compared before its score is handed out: the path for a path column (cheap), the size and a hash of the
    /// pixels for an image column (whose images the consumer's cursor then decodes too). A mismatch is an error naming
    /// the row; the data can be cached (<c>MLContext.Data.Cache</c>) to read it in one order.
    /// </remarks>
    private sealed class LookaheadResults : RowResults, IDisposable
    {
        private readonly DataViewRow _row;
        private readonly ImageColumnReader _rowReader;
        private readonly IDataView _source;
        private readonly DataViewSchema.Column _imageColumn;
        private readonly int _capacity;
        private DataViewRowCursor? _lookahead;
        private ImageColumnReader? _reader;
        private long _start = -1;
        private int _count;
        private ImageIdentity[] _identities;
        private long _checkedPosition = -1;
        private float[]? _nextImages;
        private ImageIdentity[] _nextIdentities;
        private Task? _nextLoad;
        private long _nextStart = -1;
        private int _nextCount;

        /// <summary>Creates the batches for <paramref name="row"/>, a cursor over <paramref name="source"/> with <paramref name="imageColumn"/> active.</summary>
        public LookaheadResults(ImageAnomalyTransformerBase parent, DataViewRow row, IDataView source, DataViewSchema.Column imageColumn)
            : base(parent, parent.ScoringBatchSize)
        {
            _row = row;
            _rowReader = new ImageColumnReader(row, imageColumn, parent.MaxImagePixels);
            _source = source;
            _imageColumn = imageColumn;
            _capacity = parent.ScoringBatchSize;
            _identities = new ImageIdentity[_capacity];
            _nextIdentities = new ImageIdentity[_capacity];
        }

        public override int Current()
        {
            long position = _row.Position;
            if (position < 0)
                throw new InvalidOperationException("The cursor is not on a row: call MoveNext first.");
            int slot = Slot(position);
            if (position != _checkedPosition)
            {
                ImageIdentity seen = _rowReader.ReadIdentity();
                if (seen != _identities[slot])
                {
                    throw new InvalidOperationException(
                        $"The input data gave two cursors different rows at row {position}: column '{_imageColumn.Name}' holds {seen} for one " +
                        $"and {_identities[slot]} for the other. Image anomaly scoring reads ahead with a second cursor and needs data that " +
                        "gives every cursor the same rows in the same order; cache it first (MLContext.Data.Cache) if its source does not.");
                }
                _checkedPosition = position;
            }
            return slot;
        }

        /// <summary>Makes sure the batch holding <paramref name="position"/> is scored; returns the row's slot in it.</summary>
        private int Slot(long position)
        {
            if (position >= _start && position < _start + _count)
                return (int)(position - _start);

            if (_lookahead is null)
            {
                _lookahead = _source.GetRowCursor([_imageColumn]);
                _reader = new ImageColumnReader(_lookahead, _imageColumn, Parent.MaxImagePixels);
            }

            if (_nextLoad is not null)
            {
                bool wanted = position >= _nextStart && position < _nextStart + _nextCount;
                var load = _nextLoad;
                _nextLoad = null;
                try
                {
                    load.GetAwaiter().GetResult();
                }
                catch when (!wanted)
                {
                    // A failure in rows the consumer passed over is not its concern.
                }
                if (wanted)
                {
                    (Images, _nextImages) = (_nextImages!, Images);
                    (_identities, _nextIdentities) = (_nextIdentities, _identities);
                    ScoreBatch(_nextStart, _nextCount);
                    return (int)(position - _start);
                }
            }

            // Skip rows the consumer passed without asking for their scores.
            while (_lookahead.Position < position - 1)
            {
                if (!_lookahead.MoveNext())
                    throw OutOfStep(position);
            }
            if (_lookahead.Position != position - 1)
                throw OutOfStep(position);

            // Paths are read in row order; their files are decoded in parallel.
            var loads = new List<Action>();
            int count = Read(Images, _identities, loads);
            if (count == 0)
                throw OutOfStep(position);
            ImageColumnReader.RunInParallel(loads);
            ScoreBatch(position, count);
            return 0;
        }

        /// <summary>Scores the batch in <see cref="RowResults.Images"/>, rows from <paramref name="start"/>, once the next batch is on its way.</summary>
        private void ScoreBatch(long start, int count)
        {
            _start = start;
            _count = count;
            LoadNext();
            Score(count);
        }

        /// <summary>Reads the next batch's rows into <paramref name="images"/> and <paramref name="identities"/> (paths: as loads to run); returns their number.</summary>
        private int Read(float[] images, ImageIdentity[] identities, List<Action> loads)
        {
            int count = 0;
            while (count < _capacity && _lookahead!.MoveNext())
            {
                Parent.Host.CheckAlive();
                if (_reader!.ReadDeferred(images, count * ImageSize, Parent.InputHeight, Parent.InputWidth) is Action load)
                    loads.Add(load);
                identities[count] = _reader.LastIdentity();
                count++;
            }
            return count;
        }

        /// <summary>Reads the rows after the current batch and starts decoding their files in the background.</summary>
        private void LoadNext()
        {
            _nextImages ??= new float[Images.Length];
            var loads = new List<Action>();
            long start = _lookahead!.Position + 1;
            int count = Read(_nextImages, _nextIdentities, loads);
            if (count == 0)
                return;
            _nextStart = start;
            _nextCount = count;
            _nextLoad = Task.Run(() => ImageColumnReader.RunInParallel(loads));
        }

        public void Dispose()
        {
            try
            {
                _nextLoad?.Wait();
            }
            catch (AggregateException)
            {
                // Rows never asked for.
            }
            _lookahead?.Dispose();
        }

        private static InvalidOperationException OutOfStep(long position) =>
            new($"The input data returned different rows to two cursors (at row {position}); image anomaly scoring needs data that can be read repeatedly in the same order.");
    }

    /// <summary>Row mapper used by prediction engines and by ML.NET's row-to-row machinery; scores one row at a time.</summary>
    private sealed class Mapper : MapperBase
    {
        private readonly ImageAnomalyTransformerBase _parent;
        private readonly DataViewSchema.Column _imageColumn;
        private readonly OutputColumn[] _outputs;

        public Mapper(ImageAnomalyTransformerBase parent, DataViewSchema inputSchema)
            : base(parent.Host.Register(nameof(Mapper)), inputSchema, parent)
        {
            _parent = parent;
            _imageColumn = ImageColumnReader.Find(inputSchema, parent.InputColumnName, nameof(inputSchema));
            _outputs = parent.GetOutputColumns();
        }

        protected override DataViewSchema.DetachedColumn[] GetOutputColumnsCore() =>
            [.. _outputs.Select(c => new DataViewSchema.DetachedColumn(c.Name, c.Type))];

        public override Delegate[] CreateGetters(DataViewRow input, Func<int, bool> activeOutput, out Action disposer)
        {
            // One shared result per row for all output columns, so each row is scored once.
            var results = new SingleRowResults(_parent, input, _imageColumn);
            var getters = new Delegate[_outputs.Length];
            for (int i = 0; i < _outputs.Length; i++)
            {
                if (activeOutput(i))
                    getters[i] = _parent.MakeOutputGetter(_outputs[i], results);
            }
            disposer = null!;
            return getters;
        }

        protected override Delegate MakeGetter(DataViewRow input, int iinfo, Func<int, bool> activeOutput, out Action disposer)
        {
            disposer = null!;
            return _parent.MakeOutputGetter(_outputs[iinfo], new SingleRowResults(_parent, input, _imageColumn));
        }

        protected override Func<int, bool> GetDependenciesCore(Func<int, bool> activeOutput)
        {
            bool any = Enumerable.Range(0, _outputs.Length).Any(activeOutput);
            int image = _imageColumn.Index;
            return column => any && column == image;
        }

        protected override void SaveModel(ModelSaveContext ctx) => _parent.SaveModel(ctx);
    }

    /// <summary>The data view returned by <see cref="Transform(IDataView)"/>: input columns followed by the output columns, scored in batches.</summary>
    private sealed partial class BatchScoringDataView : IDataView
    {
        private readonly ImageAnomalyTransformerBase _parent;
        private readonly IDataView _source;
        private readonly DataViewSchema.Column _imageColumn;
        private readonly OutputColumn[] _outputs;

        public BatchScoringDataView(ImageAnomalyTransformerBase parent, IDataView source, DataViewSchema.Column imageColumn)
        {
            _parent = parent;
            _source = source;
            _imageColumn = imageColumn;
            _outputs = parent.GetOutputColumns();
            var builder = new DataViewSchema.Builder();
            builder.AddColumns(source.Schema);
            foreach (OutputColumn output in _outputs)
                builder.AddColumn(output.Name, output.Type);
            Schema = builder.ToSchema();
        }

        public DataViewSchema Schema { get; }

        // Rows are matched between two cursors by position (and checked by value), so the order must be the source's own.
        public bool CanShuffle => false;

        public long? GetRowCount() => _source.GetRowCount();

        public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
        {
            ArgumentNullException.ThrowIfNull(columnsNeeded);
            return new Cursor(this, columnsNeeded);
        }

        public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
            [GetRowCursor(columnsNeeded, rand)];

        private sealed class Cursor : DataViewRowCursor
        {
            private readonly BatchScoringDataView _view;
            private readonly DataViewRowCursor _input;
            private readonly bool[] _active;
            private readonly Delegate?[] _outputGetters;
            private readonly LookaheadResults? _results;
            private bool _disposed;

            public Cursor(BatchScoringDataView view, IEnumerable<DataViewSchema.Column> columnsNeeded)
            {
                _view = view;
                int inputCount = view._source.Schema.Count;
                _active = new bool[view.Schema.Count];
                foreach (DataViewSchema.Column column in columnsNeeded)
                {
                    if (column.Index < 0 || column.Index >= _active.Length)
                        throw new ArgumentOutOfRangeException(nameof(columnsNeeded), $"Column '{column.Name}' does not belong to this data view.");
                    _active[column.Index] = true;
                }

                // Scoring reads the image column on this cursor too, to check it against the rows read ahead.
                bool scoring = view._outputs.Select((_, i) => _active[inputCount + i]).Any(a => a);
                _input = view._source.GetRowCursor(view._source.Schema.Where(c => _active[c.Index] || (scoring && c.Index == view._imageColumn.Index)));
                _outputGetters = new Delegate?[view._outputs.Length];
                if (scoring)
                {
                    _results = new LookaheadResults(view._parent, _input, view._source, view._imageColumn);
                    for (int i = 0; i < view._outputs.Length; i++)
                    {
                        if (_active[inputCount + i])
                            _outputGetters[i] = view._parent.MakeOutputGetter(view._outputs[i], _results);
                    }
                }
            }

            public override DataViewSchema Schema => _view.Schema;

            public override long Position => _input.Position;

            public override long Batch => _input.Batch;

            public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();

            public override bool IsColumnActive(DataViewSchema.Column column) =>
                column.Index >= 0 && column.Index < _active.Length && _active[column.Index];

            public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
            {
                if (!IsColumnActive(column))
                    throw new InvalidOperationException($"Column '{column.Name}' was not requested when the cursor was made.");
                int inputCount = _view._source.Schema.Count;
                if (column.Index < inputCount)
                    return _input.GetGetter<TValue>(_input.Schema[column.Index]);
                if (_outputGetters[column.Index - inputCount] is ValueGetter<TValue> getter)
                    return getter;
                throw new InvalidOperationException($"Column '{column.Name}' holds {column.Type}, which cannot be read as {typeof(TValue).Name}.");
            }

            public override bool MoveNext()
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                return _input.MoveNext();
            }

            protected override void Dispose(bool disposing)
            {
                if (_disposed)
                    return;
                if (disposing)
                {
                    _results?.Dispose();
                    _input.Dispose();
                }
                _disposed = true;
                base.Dispose(disposing);
            }
        }
    }
}
