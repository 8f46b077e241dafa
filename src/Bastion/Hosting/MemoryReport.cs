using System.Diagnostics;
using System.Globalization;

namespace Bastion.Hosting;

/// <summary>
/// For measuring memory (bench/mem.sh): with <c>BASTION_MEMORY_REPORT=FILE</c> in the environment, one line a second
/// is appended to FILE with what the GC holds next to the process's resident size, so that a benchmark can tell the
/// managed heap from the runtime's images, code and native memory. Off (nothing started) without the variable.
/// </summary>
public sealed class MemoryReport : IDisposable
{
    readonly Timer _timer;
    readonly string _path;

    MemoryReport(string path)
    {
        _path = path;
        _timer = new Timer(_ => Write(), null, 0, 1000);
    }

    public static MemoryReport? Start() =>
        Environment.GetEnvironmentVariable("BASTION_MEMORY_REPORT") is { Length: > 0 } path ? new MemoryReport(path) : null;

    void Write()
    {
        var gc = GC.GetGCMemoryInfo(GCKind.Any);
        using var p = Process.GetCurrentProcess();
        var g = gc.GenerationInfo;
        var line = string.Create(CultureInfo.InvariantCulture,
            $"t={Environment.TickCount64} rss_kib={p.WorkingSet64 >> 10} gc_committed_kib={gc.TotalCommittedBytes >> 10} gc_heap_kib={gc.HeapSizeBytes >> 10} " +
            $"gc_fragmented_kib={gc.FragmentedBytes >> 10} gen0_kib={g[0].SizeAfterBytes >> 10} gen1_kib={g[1].SizeAfterBytes >> 10} " +
            $"gen2_kib={g[2].SizeAfterBytes >> 10} loh_kib={g[3].SizeAfterBytes >> 10} poh_kib={g[4].SizeAfterBytes >> 10} " +
            $"allocated_kib={GC.GetTotalAllocatedBytes() >> 10} gcs={GC.CollectionCount(0)}/{GC.CollectionCount(1)}/{GC.CollectionCount(2)} " +
            $"pause_pct={gc.PauseTimePercentage:0.##} threads={p.Threads.Count} pool_threads={ThreadPool.ThreadCount}\n");
        try { File.AppendAllText(_path, line); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    public void Dispose() => _timer.Dispose();
}
