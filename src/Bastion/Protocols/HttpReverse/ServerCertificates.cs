using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Bastion.Configuration;

namespace Bastion.Protocols.HttpReverse;

/// <summary>
/// The listener's certificates (`tls:` one or a list of PEM cert + key), chosen per handshake by SNI: an exact
/// name from the certificate's SAN (or CN), then a `*.` wildcard, else the first certificate. Each is prepared
/// once as an <see cref="SslStreamCertificateContext"/> with its intermediates, so a handshake builds no chain.
/// </summary>
public sealed class ServerCertificates
{
    readonly Dictionary<string, SslStreamCertificateContext> _exact = new(StringComparer.OrdinalIgnoreCase);
    readonly Dictionary<string, SslStreamCertificateContext> _wildcard = new(StringComparer.OrdinalIgnoreCase);
    readonly SslStreamCertificateContext _default;

    public IReadOnlyList<X509Certificate2> Certificates { get; }

    public ServerCertificates(BastionConfig root, IEnumerable<TlsCertConfig> tls)
    {
        var certs = new List<X509Certificate2>();
        SslStreamCertificateContext? first = null;
        foreach (var t in tls)
        {
            var certPath = root.Resolve(t.Cert);
            X509Certificate2 leaf;
            try { leaf = X509Certificate2.CreateFromPemFile(certPath, root.Resolve(t.Key)); }
            catch (CryptographicException e)
            {
                throw new CryptographicException($"certificate {certPath} with key {root.Resolve(t.Key)}: {e.Message}", e);
            }
            var all = new X509Certificate2Collection();
            all.ImportFromPemFile(certPath);
            var intermediates = new X509Certificate2Collection();
            for (int i = 1; i < all.Count; i++) intermediates.Add(all[i]);
            var ctx = SslStreamCertificateContext.Create(leaf, intermediates, offline: true);
            first ??= ctx;
            certs.Add(leaf);
            foreach (var name in Names(leaf))
            {
                if (name.StartsWith("*.", StringComparison.Ordinal)) _wildcard.TryAdd(name[2..], ctx);
                else _exact.TryAdd(name, ctx);
            }
        }
        _default = first ?? throw new InvalidOperationException("no certificate configured");
        Certificates = certs;
    }

    static IEnumerable<string> Names(X509Certificate2 c)
    {
        var names = new List<string>();
        foreach (var ext in c.Extensions)
            if (ext is X509SubjectAlternativeNameExtension san)
                names.AddRange(san.EnumerateDnsNames());
        if (names.Count == 0 && c.GetNameInfo(X509NameType.DnsName, false) is { Length: > 0 } cn) names.Add(cn);
        return names;
    }

    public SslStreamCertificateContext Select(string? serverName)
    {
        if (string.IsNullOrEmpty(serverName)) return _default;
        if (_exact.TryGetValue(serverName, out var c)) return c;
        int dot = serverName.IndexOf('.');
        if (dot > 0 && _wildcard.TryGetValue(serverName[(dot + 1)..], out c)) return c;
        return _default;
    }
}
