namespace Bastion.Gateway.Tls;

/// <summary>
/// A listener's minted-certificate cache, bound to the CA it was minted from: when a reload brings another CA,
/// the next tunnel gets a fresh cache (and a fresh leaf key) and the old one is dropped.
/// </summary>
/// <param name="onMinted">Told how long each minting took.</param>
public sealed class TlsInspector(Action<TimeSpan>? onMinted = null)
{
    MintedCertificateCache? _cache;

    public MintedCertificateCache? Current => Volatile.Read(ref _cache);

    public MintedCertificateCache CacheFor(CertificateAuthority ca)
    {
        var c = Volatile.Read(ref _cache);
        if (c is not null && c.Ca.Thumbprint == ca.Thumbprint) return c;
        var fresh = new MintedCertificateCache(ca, onMinted: onMinted);
        var seen = Interlocked.CompareExchange(ref _cache, fresh, c);
        // Another tunnel swapped first: use its cache if it is for this CA.
        return ReferenceEquals(seen, c) ? fresh : (seen!.Ca.Thumbprint == ca.Thumbprint ? seen : fresh);
    }
}
