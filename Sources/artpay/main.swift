print("artpay")
