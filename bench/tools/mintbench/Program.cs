// Cost of minting one certificate as Bastion does it for a new server name: the leaf (one ECDSA signature by the
// CA, the listener's leaf key reused) and the TLS context SslStream serves it from. Sequential, after a warm-up,
// so that it measures the work and not queueing. Prints "MINTBENCH n=... mint_p50_ms=... context_p50_ms=... total_p50_ms=...".
using System.Diagnostics;
using Bastion.Gateway.Tls;

int n = args.Length > 0 ? int.Parse(args[0]) : 500;
bool rsa = args.Contains("--rsa");
var dir = Path.Combine(Path.GetTempPath(), "bastion-mintbench-" + Guid.NewGuid().ToString("N")[..8]);
try
{
    CertificateAuthority.Create(dir, rsa, []);
    using var ca = CertificateAuthority.Load(dir);
    using var minter = new CertificateMinter(ca);
    for (int i = 0; i < 50; i++) minter.MintContext($"warm{i}.example");
    var mint = new double[n];
    var total = new double[n];
    for (int i = 0; i < n; i++)
    {
        var sw = Stopwatch.StartNew();
        using var leaf = minter.Mint($"n{i}.example");
        mint[i] = sw.Elapsed.TotalMilliseconds;
        sw.Restart();
        _ = minter.MintContext($"c{i}.example");
        total[i] = sw.Elapsed.TotalMilliseconds;
    }
    Array.Sort(mint);
    Array.Sort(total);
    Console.WriteLine(FormattableString.Invariant(
        $"MINTBENCH n={n} key={(rsa ? "rsa" : "ecdsa")} mint_p50_ms={mint[n / 2]:0.000} total_p50_ms={total[n / 2]:0.000} total_p90_ms={total[n * 9 / 10]:0.000}"));
}
finally { Directory.Delete(dir, true); }
