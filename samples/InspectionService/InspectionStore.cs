using System.Globalization;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;

namespace InspectionService;

/// <summary>One inspection in the history. Paths are relative to the data folder.</summary>
public sealed record InspectionRecord(
    string Id, DateTimeOffset Time, string Model, string ModelVersion, float Score, float? Threshold, bool? IsAnomalous,
    string ImageSha256, string FileName, string ImagePath, string? OverlayPath, double ElapsedMs);

/// <summary>
/// Where the history lives. The service ships <see cref="SqliteInspectionStore"/> (one file, one instance); several
/// instances behind a load balancer share a server database by implementing this interface over it (PostgreSQL through
/// Npgsql takes the same four statements) and registering that class instead.
/// </summary>
public interface IInspectionStore
{
    /// <summary>Adds a record; returns the records that fell out of the retention limit (their files are the caller's to delete).</summary>
    Task<IReadOnlyList<InspectionRecord>> AddAsync(InspectionRecord record, int keep, CancellationToken cancellationToken);

    /// <summary>The record with this id, or null.</summary>
    Task<InspectionRecord?> GetAsync(string id, CancellationToken cancellationToken);

    /// <summary>The newest <paramref name="limit"/> records, newest first.</summary>
    Task<IReadOnlyList<InspectionRecord>> ListAsync(int limit, CancellationToken cancellationToken);
}

/// <summary>The history in SQLite: a file <c>inspections.db</c> in the data folder, created on first start.</summary>
public sealed class SqliteInspectionStore : IInspectionStore
{
    private const string Columns = "id, time, model, model_version, score, threshold, is_anomalous, image_sha256, file_name, image_path, overlay_path, elapsed_ms";
    private readonly string _connectionString;

    /// <summary>Opens (and creates when missing) the database in the configured data folder.</summary>
    public SqliteInspectionStore(IOptions<ServiceOptions> options)
    {
        string folder = Path.GetFullPath(options.Value.DataFolder);
        Directory.CreateDirectory(folder);
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = Path.Combine(folder, "inspections.db"),
            Mode = SqliteOpenMode.ReadWriteCreate,
            Pooling = true,
        }.ToString();
        using var connection = Open();
        using var create = connection.CreateCommand();
        // WAL: readers (the page's list) never wait for the writer.
        create.CommandText = """
            PRAGMA journal_mode = WAL;
            CREATE TABLE IF NOT EXISTS inspections (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                time TEXT NOT NULL,
                model TEXT NOT NULL,
                model_version TEXT NOT NULL,
                score REAL NOT NULL,
                threshold REAL NULL,
                is_anomalous INTEGER NULL,
                image_sha256 TEXT NOT NULL,
                file_name TEXT NOT NULL,
                image_path TEXT NOT NULL,
                overlay_path TEXT NULL,
                elapsed_ms REAL NOT NULL);
            """;
        create.ExecuteNonQuery();
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<InspectionRecord>> AddAsync(InspectionRecord record, int keep, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var transaction = (SqliteTransaction)await connection.BeginTransactionAsync(cancellationToken);
        await using (var insert = connection.CreateCommand())
        {
            insert.Transaction = transaction;
            insert.CommandText = $"INSERT INTO inspections ({Columns}) VALUES ($id, $time, $model, $version, $score, $threshold, $anomalous, $sha, $name, $image, $overlay, $elapsed)";
            insert.Parameters.AddWithValue("$id", record.Id);
            insert.Parameters.AddWithValue("$time", record.Time.UtcDateTime.ToString("O", CultureInfo.InvariantCulture));
            insert.Parameters.AddWithValue("$model", record.Model);
            insert.Parameters.AddWithValue("$version", record.ModelVersion);
            insert.Parameters.AddWithValue("$score", (double)record.Score);
            insert.Parameters.AddWithValue("$threshold", record.Threshold is float t ? (double)t : DBNull.Value);
            insert.Parameters.AddWithValue("$anomalous", record.IsAnomalous is bool a ? (a ? 1 : 0) : DBNull.Value);
            insert.Parameters.AddWithValue("$sha", record.ImageSha256);
            insert.Parameters.AddWithValue("$name", record.FileName);
            insert.Parameters.AddWithValue("$image", record.ImagePath);
            insert.Parameters.AddWithValue("$overlay", (object?)record.OverlayPath ?? DBNull.Value);
            insert.Parameters.AddWithValue("$elapsed", record.ElapsedMs);
            await insert.ExecuteNonQueryAsync(cancellationToken);
        }
        // Retention: everything older than the newest `keep` records goes, in the same transaction.
        List<InspectionRecord> removed;
        const string Older = "seq <= (SELECT seq FROM inspections ORDER BY seq DESC LIMIT 1 OFFSET $keep)";
        await using (var select = connection.CreateCommand())
        {
            select.Transaction = transaction;
            select.CommandText = $"SELECT {Columns} FROM inspections WHERE {Older}";
            select.Parameters.AddWithValue("$keep", keep);
            removed = await ReadAsync(select, cancellationToken);
        }
        if (removed.Count > 0)
        {
            await using var delete = connection.CreateCommand();
            delete.Transaction = transaction;
            delete.CommandText = $"DELETE FROM inspections WHERE {Older}";
            delete.Parameters.AddWithValue("$keep", keep);
            await delete.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
        return removed;
    }

    /// <inheritdoc />
    public async Task<InspectionRecord?> GetAsync(string id, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var select = connection.CreateCommand();
        select.CommandText = $"SELECT {Columns} FROM inspections WHERE id = $id";
        select.Parameters.AddWithValue("$id", id);
        return (await ReadAsync(select, cancellationToken)).SingleOrDefault();
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<InspectionRecord>> ListAsync(int limit, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var select = connection.CreateCommand();
        select.CommandText = $"SELECT {Columns} FROM inspections ORDER BY seq DESC LIMIT $limit";
        select.Parameters.AddWithValue("$limit", limit);
        return await ReadAsync(select, cancellationToken);
    }

    private SqliteConnection Open()
    {
        var connection = new SqliteConnection(_connectionString);
        connection.Open();
        // In WAL mode NORMAL syncs at checkpoints rather than every commit: a crash loses nothing, a power cut at most the
        // last inspections, and a commit does not wait for the disk.
        using var pragma = connection.CreateCommand();
        pragma.CommandText = "PRAGMA synchronous = NORMAL";
        pragma.ExecuteNonQuery();
        return connection;
    }

    private static async Task<List<InspectionRecord>> ReadAsync(SqliteCommand command, CancellationToken cancellationToken)
    {
        var records = new List<InspectionRecord>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            records.Add(new InspectionRecord(
                reader.GetString(0),
                DateTimeOffset.Parse(reader.GetString(1), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal),
                reader.GetString(2),
                reader.GetString(3),
                (float)reader.GetDouble(4),
                reader.IsDBNull(5) ? null : (float)reader.GetDouble(5),
                reader.IsDBNull(6) ? null : reader.GetInt64(6) != 0,
                reader.GetString(7),
                reader.GetString(8),
                reader.GetString(9),
                reader.IsDBNull(10) ? null : reader.GetString(10),
                reader.GetDouble(11)));
        }
        return records;
    }
}
