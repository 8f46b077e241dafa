using Bastion.Hosting;

namespace Bastion.Tests.Unit;

/// <summary>
/// Issue 14 item 4: the gateway keeps its young generation near <see cref="HeapBudget.Budget"/> by itself (the
/// runtime's gen0 budget follows the L3 cache: ~130 MiB on the benchmark machine, which is what put peak RSS at
/// 130-300 MiB).
/// </summary>
public class HeapBudgetTests
{
    [Fact]
    public async Task Collects_gen0_every_few_MiB_allocated()
    {
        Assert.True(string.IsNullOrEmpty(Environment.GetEnvironmentVariable("DOTNET_GCgen0size")), "the test needs the runtime's default gen0 budget");
        using var budget = HeapBudget.Start();
        Assert.NotNull(budget);
        int gen0Before = GC.CollectionCount(0);
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);

        // 64 MiB in 1 KiB objects, paced at 1 MiB per 10 ms so that the budget's checks (20 a second) see it grow.
        object? keep = null;
        using var pace = new PeriodicTimer(TimeSpan.FromMilliseconds(10));
        for (int mib = 0; mib < 64; mib++)
        {
            for (int i = 0; i < 1024; i++) keep = new byte[1000];
            await pace.WaitForNextTickAsync();
        }
        GC.KeepAlive(keep);

        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        int collections = GC.CollectionCount(0) - gen0Before;
        Assert.True(allocated >= 64L << 20, $"allocated {allocated} bytes");
        // At most ~2 MiB plus what one check period allocated between collections: at least 8 for 64 MiB, where
        // the runtime's own budget on a large-cache server makes none.
        Assert.True(collections >= 8, $"{collections} gen0 collections for {allocated >> 20} MiB allocated ({budget!.Collections} asked by the budget)");
    }
}
