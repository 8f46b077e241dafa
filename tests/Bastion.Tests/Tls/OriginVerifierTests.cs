using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Bastion.Gateway.Tls;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Tls;

/// <summary>Origin certificate checks: trusted, untrusted, expired, wrong name, and what remembering a pass does not skip.</summary>
public sealed class OriginVerifierTests
{
    static readonly X509Certificate2 Ca = TestCerts.MakeCa("Verifier Test CA");

    [Fact]
    public void A_certificate_from_upstream_ca_passes_and_passes_again()
    {
        var v = new OriginVerifier([Ca]);
        var cert = TestCerts.Issue(Ca, ["good.test"]);
        Assert.Null(v.Verify("good.test", cert, null, SslPolicyErrors.RemoteCertificateChainErrors));
        Assert.Null(v.Verify("good.test", cert, null, SslPolicyErrors.RemoteCertificateChainErrors));
    }

    [Fact]
    public void A_pass_remembered_for_one_host_never_excuses_a_wrong_name()
    {
        var v = new OriginVerifier([Ca]);
        var cert = TestCerts.Issue(Ca, ["good.test"]);
        Assert.Null(v.Verify("good.test", cert, null, SslPolicyErrors.None));
        var e = v.Verify("other.test", cert, null, SslPolicyErrors.RemoteCertificateNameMismatch);
        Assert.Equal("the certificate of other.test is for good.test, not other.test", e);
    }

    [Fact]
    public void Untrusted_and_expired_certificates_are_refused_with_the_reason()
    {
        var v = new OriginVerifier([Ca]);
        var selfSigned = TestCerts.Make("self.test", ["self.test"]);
        Assert.Contains("which is not trusted", v.Verify("self.test", selfSigned, null, SslPolicyErrors.RemoteCertificateChainErrors));
        Assert.Contains("which is not trusted", new OriginVerifier([]).Verify("good.test", TestCerts.Issue(Ca, ["good.test"]), null, SslPolicyErrors.None));
        var expired = TestCerts.Issue(Ca, ["old.test"], null, DateTimeOffset.UtcNow.AddDays(-20), DateTimeOffset.UtcNow.AddDays(-2));
        Assert.StartsWith("the certificate of old.test expired on ", v.Verify("old.test", expired, null, SslPolicyErrors.RemoteCertificateChainErrors));
        Assert.Equal("x.test sent no certificate", v.Verify("x.test", null, null, SslPolicyErrors.RemoteCertificateNotAvailable));
    }
}
